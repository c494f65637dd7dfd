"""Predict over many inputs: streamed, batched, decoding overlapped with compute, resumable —
images (files, folders, tables of paths) and texts (texts given, .txt files, folders, tables
with a text column) alike: the model's modality reads the inputs.

Inputs are walked lazily, in a fixed order. DataLoader workers (or, with none, one thread) decode
and prepare whole batches (worker w takes batches w, w+W, ...; the loader returns them in order)
while the main process collates them and runs the model, so memory stays flat whatever the number of inputs. Rows go to a journal beside the output (`OUT.partial`), flushed after
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
from .errors import TransferkitError
from .modality import InputError
from .predictor import load_predictor
from .topk import above
from .topk import top_k as top_labels

FSYNC_EVERY = 64  # batches between fsyncs of the journal (each batch is flushed to the OS)


class _Batches(torch.utils.data.IterableDataset):
    """Prepared batches of the input stream; runs in DataLoader workers."""

    def __init__(self, modality, inputs: list, options: dict, pre, batch_size: int, skip: int):
        self.modality, self.inputs, self.options, self.pre, self.batch_size, self.skip = modality, inputs, options, pre, batch_size, skip

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        n_workers, me = (info.num_workers, info.id) if info else (1, 0)
        stream = itertools.islice(self.modality.iter_inputs(self.inputs, self.options), self.skip, None)
        for b, chunk in enumerate(_chunks(stream, self.batch_size)):
            if b % n_workers == me:
                yield self._load(chunk)

    def _load(self, refs: list):
        items, ok, errors = [], [], {}
        for j, ref in enumerate(refs):
            try:
                items.append(self.pre.item(self.pre.load(ref.payload)))
                ok.append(j)
            except InputError as exc:
                errors[j] = str(exc)
            except Exception as exc:  # noqa: BLE001 - a strange file must not stop 100k others
                errors[j] = f"cannot prepare ({type(exc).__name__}: {exc})"
        return [r.id for r in refs], items, ok, errors


def _chunks(it: Iterator, n: int) -> Iterator[list]:
    while chunk := list(itertools.islice(it, n)):
        yield chunk


def header(top_k: int, uncertain: bool = False, label_sets: list[str] | None = None) -> list[str]:
    """The output columns; `label_sets` (a multi-label model's classes): a `labels` column (every
    label at or above its threshold, joined by '|') and one probability column per label first."""
    sets = ["labels", *[f"p_{c}" for c in label_sets]] if label_sets is not None else []
    return ["path", *sets] + [f"{n}{j}" for j in range(1, top_k + 1) for n in ("label", "prob")] + (["uncertain"] if uncertain else []) + ["error"]


def predict_files(
    model,
    inputs: Iterable,
    out: str | os.PathLike | None = None,
    *,
    top_k: int = 1,
    batch_size: int = 32,
    workers: int | None = None,
    progress: bool = True,
    restart: bool = False,
    data_root: str | os.PathLike | None = None,
    text_column: str | None = None,
    device: str = "cpu",
    min_confidence: float = 0.0,
    stdout=None,
) -> dict:
    """Label every input in `inputs` with `model` (a run folder, an .onnx / TorchScript file or
    a Predictor) and write one row per input to `out` (.csv, or .parquet with pyarrow), or
    print CSV rows to `stdout` when `out` is None. Image models: files, folders, tables of
    paths. Text models: `modality.Ref(id, text)` items for texts given directly, .txt files,
    folders of them, tables with a text column. Unusable inputs get a row with `error`.

    Started again after an interruption with the same `out`, it resumes after the last row
    written (`restart=True` discards that). `min_confidence` P > 0 adds an `uncertain` column:
    true where the top probability is below P (the run page says which P reaches 95% accuracy
    on validation). Returns counts and timings.
    """
    from .loop.data import default_workers, prefetched
    from .loop.devices import choose
    from .progress import bar as progress_bar

    t0 = time.perf_counter()
    inputs = list([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)
    placement = choose(device, "fp32")
    pred = load_predictor(model, placement)
    mod = pred.modality
    if not inputs:
        raise TransferkitError(f"no inputs: give {mod.unit} files, folders of them or tables" + (" (or --text TEXT)" if mod.name == "text" else ""))
    mod.check_inputs(inputs)
    if data_root and mod.name != "image":
        raise TransferkitError(f"--data-root applies to tables of image paths; {pred.source} is a {mod.name} model")
    if text_column and mod.name != "text":
        raise TransferkitError(f"--text-column applies to text models; {pred.source} is an {mod.name} model")
    options = {"data_root": data_root, "text_column": text_column}
    if not 0.0 <= float(min_confidence) < 1.0:
        raise TransferkitError(f"--min-confidence {min_confidence}: give a probability between 0 and 1 (e.g. 0.9)")
    k = max(1, min(int(top_k), len(pred.classes)))
    flag = min_confidence > 0
    multi = pred.thresholds is not None
    if flag and multi:
        raise TransferkitError(f"--min-confidence applies to single-label models; {pred.source} predicts label sets, each label against its own threshold (drop the option)")
    cols = header(k, flag, pred.classes if multi else None)
    n_sets = len(pred.classes) + 1 if multi else 0
    fmt = _format(out)
    total = sum(1 for _ in mod.iter_inputs(inputs, options))
    if total == 0:
        raise TransferkitError(f"no {mod.unit}s found in {', '.join(str(getattr(i, 'id', i)) for i in inputs[:5])}")

    journal = sink = None
    done = 0
    if out is not None:
        journal = Path(str(out) + ".partial")
        settings = {"model": str(Path(pred.source).resolve()), "top_k": k, "inputs": [_describe(i) for i in inputs], "format": fmt, **({"min_confidence": min_confidence} if flag else {})}
        done = _open_journal(journal, settings, cols, mod, inputs, options, restart)
        sink = open(journal, "a", newline="", encoding="utf-8")
    else:
        sink = stdout or sys.stdout
        csv.writer(sink, lineterminator="\n").writerow(cols)
    writer = csv.writer(sink, lineterminator="\n")

    n_workers = default_workers(total - done, placement.device, workers)
    loader = torch.utils.data.DataLoader(_Batches(mod, inputs, options, pred.preprocessor, batch_size, done), batch_size=None, num_workers=n_workers)
    if not n_workers:  # no worker process: one decoding thread a batch ahead of the model (loop/data.py's policy)
        loader = prefetched(loader)
    pbar = progress_bar(total, "predicting", mod.unit, initial=done, disable=not progress)
    rows = errors = 0
    try:
        for b, (ids, items, ok, errs) in enumerate(loader):
            probs = pred.predict_proba(pred.preprocessor.collate(items)) if ok else np.zeros((0, len(pred.classes)))
            by_pos = dict(zip(ok, probs))
            for j, rid in enumerate(ids):
                if j in errs:
                    writer.writerow([rid, *[""] * (n_sets + 2 * k), *([""] if flag else []), errs[j]])
                    errors += 1
                else:
                    labels, ps = top_labels(by_pos[j], pred.classes, k)
                    sets = ["|".join(above(by_pos[j], pred.classes, pred.thresholds)[0]), *[f"{p:.6f}" for p in by_pos[j]]] if multi else []
                    writer.writerow([rid, *sets, *[v for lab, p in zip(labels, ps) for v in (lab, f"{p:.6f}")], *([str(ps[0] < min_confidence).lower()] if flag else []), ""])
            rows += len(ids)
            sink.flush()
            if journal is not None and b % FSYNC_EVERY == FSYNC_EVERY - 1:
                os.fsync(sink.fileno())
            pbar.update(len(ids))
    finally:
        pbar.close()
        if journal is not None:
            sink.flush()
            os.fsync(sink.fileno())
            sink.close()
    result = {"rows": done + rows, "new_rows": rows, "resumed_after": done, "errors_in_new_rows": errors, "seconds": time.perf_counter() - t0, "model": pred.source, "kind": pred.kind, "workers": n_workers}
    if journal is not None:
        _finish(journal, Path(out), fmt, k, flag, pred.classes if multi else None)
        result["out"] = str(out)
    return result


def _describe(i) -> str:
    """An input as the journal's settings record it (a text given directly: its hash)."""
    from .modality import Ref

    if isinstance(i, Ref):
        import hashlib

        return f"{i.id}#{hashlib.blake2b(str(i.payload).encode('utf-8', 'surrogatepass'), digest_size=8).hexdigest()}"
    return str(Path(i).resolve())


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


def _open_journal(journal: Path, settings: dict, cols: list[str], mod, inputs: list, options: dict, restart: bool) -> int:
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
            ref = next(itertools.islice(mod.iter_inputs(inputs, options), done - 1, None), None)
            at = ref.id if ref is not None else None
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


def _finish(journal: Path, out: Path, fmt: str, k: int, uncertain: bool = False, label_sets: list[str] | None = None) -> None:
    meta = Path(str(journal) + ".json")
    if fmt == "csv":
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(journal, out)
    else:
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        types = {"path": pa.string(), "error": pa.string(), **{f"label{j}": pa.string() for j in range(1, k + 1)}, **{f"prob{j}": pa.float64() for j in range(1, k + 1)},
                 **({"uncertain": pa.bool_()} if uncertain else {}),
                 **({"labels": pa.string(), **{f"p_{c}": pa.float64() for c in label_sets}} if label_sets is not None else {})}
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
