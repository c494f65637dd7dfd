"""Predict over many files: streamed, batched, decoding overlapped with compute, resumable.

Inputs (files, folders, CSVs of paths) are walked lazily, in a fixed order. DataLoader
workers decode and preprocess whole batches (worker w takes batches w, w+W, ...; the loader
returns them in order) while the main process runs the model, so memory stays flat whatever
the number of files. Rows go to a journal beside the output (`OUT.partial`), flushed after
every batch; an interrupted run started again with the same command skips the rows already
written, and the finished file is moved into place (CSV) or converted (Parquet) at the end.
"""
from __future__ import annotations

import csv
import itertools
import os
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from . import io as tkio
from .data.images import IMAGE_EXTENSIONS, ImageDecodeError, open_rgb
from .errors import TransferkitError
from .predictor import load_predictor
from .run import iter_inputs

FSYNC_EVERY = 64  # batches between fsyncs of the journal (each batch is flushed to the OS)


class _Batches(torch.utils.data.IterableDataset):
    """Decoded, preprocessed batches of the input stream; runs in DataLoader workers."""

    def __init__(self, inputs: list[str], transform, size_hint: int, batch_size: int, skip: int, data_root=None):
        self.inputs, self.transform, self.hint, self.batch_size, self.skip = inputs, transform, size_hint, batch_size, skip
        self.data_root = data_root

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        n_workers, me = (info.num_workers, info.id) if info else (1, 0)
        stream = itertools.islice(iter_inputs(self.inputs, self.data_root), self.skip, None)
        for b, chunk in enumerate(_chunks(stream, self.batch_size)):
            if b % n_workers == me:
                yield self._load(chunk)

    def _load(self, paths: list[str]):
        xs, ok, errors = [], [], {}
        for j, path in enumerate(paths):
            try:
                xs.append(self.transform(open_rgb(path, self.hint)))
                ok.append(j)
            except ImageDecodeError as exc:
                errors[j] = str(exc)
            except Exception as exc:  # noqa: BLE001 - a strange file must not stop 100k others
                errors[j] = f"cannot preprocess ({type(exc).__name__}: {exc})"
        return paths, torch.stack(xs) if xs else torch.zeros(0), ok, errors


def _chunks(it: Iterator[str], n: int) -> Iterator[list[str]]:
    while chunk := list(itertools.islice(it, n)):
        yield chunk


def header(top_k: int) -> list[str]:
    return ["path"] + [f"{n}{j}" for j in range(1, top_k + 1) for n in ("label", "prob")] + ["error"]


def predict_files(
    model,
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike | None = None,
    *,
    top_k: int = 1,
    batch_size: int = 32,
    workers: int | None = None,
    progress: bool = True,
    restart: bool = False,
    data_root: str | os.PathLike | None = None,
    stdout=None,
) -> dict:
    """Label every image in `inputs` with `model` (a run folder, an .onnx / TorchScript file or
    a Predictor) and write one row per input to `out` (.csv, or .parquet with pyarrow), or
    print CSV rows to `stdout` when `out` is None. Unreadable files get a row with `error`.

    Started again after an interruption with the same `out`, it resumes after the last row
    written (`restart=True` discards that). Returns counts and timings.
    """
    from tqdm.auto import tqdm

    from .features.extract import default_workers, resize_hint_for

    t0 = time.perf_counter()
    inputs = [str(i) for i in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)]
    if not inputs:
        raise TransferkitError("no inputs: give image files, folders of images or CSVs with a path column")
    for i in inputs:
        if not Path(i).exists() and Path(i).suffix.lower() not in IMAGE_EXTENSIONS:
            raise TransferkitError(f"{i}: no such file or folder; give image files, folders of images or CSVs with a path column")
    pred = load_predictor(model, "predict_files")
    k = max(1, min(int(top_k), len(pred.classes)))
    cols = header(k)
    fmt = _format(out)
    total = sum(1 for _ in iter_inputs(inputs, data_root))
    if total == 0:
        raise TransferkitError(f"no images found in {', '.join(inputs)} (image types: {', '.join(sorted(IMAGE_EXTENSIONS))})")

    journal = sink = None
    done = 0
    if out is not None:
        journal = Path(str(out) + ".partial")
        settings = {"model": str(Path(pred.source).resolve()), "top_k": k, "inputs": [str(Path(i).resolve()) for i in inputs], "format": fmt}
        done = _open_journal(journal, settings, cols, inputs, restart, data_root)
        sink = open(journal, "a", newline="", encoding="utf-8")
    else:
        sink = stdout or sys.stdout
        csv.writer(sink, lineterminator="\n").writerow(cols)
    writer = csv.writer(sink, lineterminator="\n")

    n_workers = default_workers(total - done) if workers is None else int(workers)
    loader = torch.utils.data.DataLoader(
        _Batches(inputs, pred.transform, resize_hint_for(pred.data_config), batch_size, done, data_root), batch_size=None, num_workers=n_workers
    )
    bar = tqdm(total=total, initial=done, desc="predicting", unit="img", disable=not progress, file=sys.stderr, smoothing=0.1)
    rows = errors = 0
    try:
        for b, (paths, x, ok, errs) in enumerate(loader):
            probs = pred.predict_proba(x) if ok else np.zeros((0, len(pred.classes)))
            by_pos = dict(zip(ok, probs))
            for j, path in enumerate(paths):
                if j in errs:
                    writer.writerow([path, *[""] * (2 * k), errs[j]])
                    errors += 1
                else:
                    p = by_pos[j]
                    top = np.argsort(-p, kind="stable")[:k]
                    writer.writerow([path, *[v for t in top for v in (pred.classes[t], f"{float(p[t]):.6f}")], ""])
            rows += len(paths)
            sink.flush()
            if journal is not None and b % FSYNC_EVERY == FSYNC_EVERY - 1:
                os.fsync(sink.fileno())
            bar.update(len(paths))
    finally:
        bar.close()
        if journal is not None:
            sink.flush()
            os.fsync(sink.fileno())
            sink.close()
    result = {"rows": done + rows, "new_rows": rows, "resumed_after": done, "errors_in_new_rows": errors, "seconds": time.perf_counter() - t0, "model": pred.source, "kind": pred.kind, "workers": n_workers}
    if journal is not None:
        _finish(journal, Path(out), fmt, k)
        result["out"] = str(out)
    return result


def _format(out) -> str:
    if out is None:
        return "csv"
    suffix = Path(out).suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise TransferkitError(f'--out {out}: Parquet needs pyarrow; pip install "transferkit[parquet]", or write a .csv') from None
        return "parquet"
    if suffix in (".csv", ""):
        return "csv"
    raise TransferkitError(f"--out {out}: write a .csv or a .parquet file")


def _open_journal(journal: Path, settings: dict, cols: list[str], inputs: list[str], restart: bool, data_root=None) -> int:
    """Rows already written by an interrupted run with the same settings (0 for a fresh start)."""
    meta = Path(str(journal) + ".json")
    if journal.exists() and not restart:
        old = tkio.read_json(meta) if meta.exists() else None
        if old != settings:
            raise TransferkitError(
                f"{journal}: an interrupted prediction with other settings (model, inputs or --top-k) is there; "
                "run the same command to resume it, or add --restart to discard it"
            )
        done, last = _repair(journal, cols)
        if done:
            at = next(itertools.islice(iter_inputs(inputs, data_root), done - 1, None), None)
            if at != last:
                raise TransferkitError(f"{journal}: the inputs changed since the interrupted run (row {done} was {last}, now {at}); add --restart to start over")
            print(f"[transferkit] resuming: {done} rows already in {journal}", file=sys.stderr)
        return done
    tkio.write_json(meta, settings)
    tkio.write_text(journal, ",".join(cols) + "\n")
    return 0


def _repair(journal: Path, cols: list[str]) -> tuple[int, str | None]:
    """Cut a half-written last line off the journal; count its rows and return the last path."""
    size = journal.stat().st_size
    with open(journal, "rb+") as fh:
        if size:
            fh.seek(max(0, size - 65536))
            tail = fh.read()
            if not tail.endswith(b"\n"):
                cut = tail.rfind(b"\n")
                fh.truncate(size - len(tail) + cut + 1 if cut >= 0 else 0)
    n, last = 0, None
    with open(journal, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        head = next(reader, None)
        if head != cols:
            raise TransferkitError(f"{journal}: not a journal of this prediction (columns {head}); add --restart")
        for row in reader:
            n, last = n + 1, row[0]
    return n, last


def _finish(journal: Path, out: Path, fmt: str, k: int) -> None:
    meta = Path(str(journal) + ".json")
    if fmt == "csv":
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(journal, out)
    else:
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        types = {"path": pa.string(), "error": pa.string(), **{f"label{j}": pa.string() for j in range(1, k + 1)}, **{f"prob{j}": pa.float64() for j in range(1, k + 1)}}
        reader = pacsv.open_csv(str(journal), convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False))
        with tkio.atomic_path(out) as tmp:
            with pq.ParquetWriter(str(tmp), reader.schema) as w:
                for batch in reader:
                    w.write_batch(batch)
        journal.unlink()
    meta.unlink(missing_ok=True)


def read_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of a predictions file written by `predict_files` (.csv or .parquet)."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(str(path)).to_pylist()
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
