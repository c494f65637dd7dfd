"""Fitted probe heads (and the label audit's out-of-fold probabilities), kept beside the
feature cache: a run whose head would be fitted on the very same numbers with the same settings
reuses the earlier fit instead of repeating it.

The key is a hash of everything the fit depends on: the training and validation feature
matrices and labels (their bytes, so any change in features, split or labels misses), the
head's settings, and the fitting code itself (heads.py's source, torch's and numpy's
versions). A second `compare` on unchanged data therefore neither runs the backbone nor
refits the probe. A damaged entry is dropped and the head fitted again.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from . import heads
from . import io as tkio
from .log import log

_CODE_ID: str | None = None


def _code_id() -> str:
    global _CODE_ID
    if _CODE_ID is None:
        from . import audit

        src = Path(heads.__file__).read_bytes() + Path(audit.__file__).read_bytes()
        _CODE_ID = hashlib.blake2b(src + f"|torch {torch.__version__}|numpy {np.__version__}".encode(), digest_size=16).hexdigest()
    return _CODE_ID


def heads_dir_for(features_dir) -> Path:
    """ROOT/heads/<namespace> for features kept in ROOT/features/<namespace>: what is fitted on
    the features is kept beside them."""
    features_dir = Path(features_dir)
    return features_dir.parent.parent / "heads" / features_dir.name


def head_key(Xtr, ytr, Xva, yva, settings: dict) -> str:
    h = hashlib.blake2b(digest_size=20)
    h.update(json.dumps({**settings, "code": _code_id()}, sort_keys=True).encode())
    for a in (Xtr, ytr, Xva, yva):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        if a.size:  # (an empty array is its dtype and shape; memoryview cannot cast it)
            h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def fit_head_cached(kind: str, Xtr, ytr, Xva, yva, n_classes: int, cache_dir: Path | None, seed: int = 0, power: str = "none", refit: bool = False, class_weight: str = "none") -> tuple[torch.nn.Module, dict, dict, torch.nn.Module]:
    """The probe's linear head fitted on these features, or the identical earlier fit from
    `cache_dir` (None: always fit). `power` and `class_weight` as in heads.fit_linear_head;
    `refit`: once C and the power are chosen on validation, the head is fitted again at them on
    train + validation (scikit-learn's LogisticRegressionCV refit).

    Returns (head, info, timing, heldout_head): timing has `train_s` (this call), `head_cached`
    and `head_fit_s` (what fitting took when it ran); `heldout_head` is the fit that never saw
    the validation items (the head itself unless refitted), for honest validation metrics."""
    if kind != "linear":
        raise ValueError(f"the head cache keeps linear probe heads, not {kind!r}")
    refit = bool(refit and len(yva))
    settings = {"kind": kind, "n_classes": int(n_classes), "seed": int(seed), "power": power, "refit": refit, **({"class_weight": class_weight} if class_weight != "none" else {})}
    path = None
    t0 = time.perf_counter()
    if cache_dir is not None:
        path = Path(cache_dir) / f"{head_key(Xtr, ytr, Xva, yva, settings)}.pt"
        if path.is_file():
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
                info = dict(saved["info"])

                def rebuilt(state):
                    h = heads.build_head(kind, Xtr.shape[1], n_classes, power=heads.POWERS[info.get("power", "none")])
                    h.load_state_dict(state)
                    return h.eval()

                head = rebuilt(saved["state"])
                heldout = rebuilt(saved["heldout_state"]) if refit else head
                log(f"head reused from the cache (fitted on the same features and settings in {saved['fit_s']:.1f} s by an earlier run)")
                return head, info, {"train_s": time.perf_counter() - t0, "head_cached": True, "head_fit_s": float(saved["fit_s"])}, heldout
            except Exception as exc:  # noqa: BLE001 - a damaged entry: fit again and replace it
                log(f"warning: {path}: unreadable cached head ({type(exc).__name__}); fitting it again")
                path.unlink(missing_ok=True)
    t1 = time.perf_counter()
    head, info = heads.fit_linear_head(Xtr, ytr, Xva, yva, n_classes, seed=seed, power=power, class_weight=class_weight)
    heldout = head
    if refit:
        log(f"refitting the head at C = {info['C']:g} on train + validation ({len(ytr) + len(yva)} items)")
        t2 = time.perf_counter()
        head, _ = heads.fit_linear_head(np.concatenate([Xtr, Xva]), np.concatenate([ytr, yva]), Xva[:0], yva[:0], n_classes, seed=seed, C=info["C"], power=info["power"], class_weight=class_weight)
        info["refit"] = {"on": "train+val", "items": int(len(ytr) + len(yva)), "fit_s": round(time.perf_counter() - t2, 2)}
    fit_s = time.perf_counter() - t1
    if path is not None:
        try:
            tkio.remove_dead_temps(path)  # what a writer of this entry killed mid-write left
            with tkio.atomic_path(path) as tmp:
                torch.save({"state": head.state_dict(), "info": info, "fit_s": fit_s, **({"heldout_state": heldout.state_dict()} if refit else {})}, tmp)
        except OSError as exc:  # a full or read-only cache costs the reuse, not the run
            log(f"warning: could not keep the fitted head in {path.parent} ({exc.strerror or exc}); the run goes on")
    return head, info, {"train_s": time.perf_counter() - t0, "head_cached": False, "head_fit_s": fit_s}, heldout


def out_of_fold_cached(X, y, n_classes: int, cache_dir: Path | None, folds: int, seed: int = 0, C: float | None = None) -> np.ndarray:
    """`audit.out_of_fold_proba(X, y, ...)`, or the identical earlier result from `cache_dir`
    (None: always compute): keyed like the heads, by the bytes of X and y, the settings and the
    code (heads.py and audit.py). A second run on unchanged data repeats no out-of-fold probe."""
    from .audit import out_of_fold_proba

    path = None
    if cache_dir is not None:
        X, y = np.asarray(X, dtype=np.float32), np.asarray(y).astype(np.int64, copy=False)
        settings = {"kind": "out_of_fold_proba", "n_classes": int(n_classes), "folds": int(folds), "seed": int(seed), "C": None if C is None else float(C)}
        path = Path(cache_dir) / f"oof-{head_key(X, y, X[:0], y[:0], settings)}.npy"
        if path.is_file():
            try:
                proba = np.load(path, allow_pickle=False)
                if proba.shape == (len(y), n_classes):
                    log("label audit: out-of-fold probabilities reused from the cache (same features, labels and settings)")
                    return proba
            except Exception:  # noqa: BLE001 - a damaged entry: compute again and replace it
                pass
            log(f"warning: {path}: unreadable cached out-of-fold probabilities; computing them again")
            path.unlink(missing_ok=True)
    proba = out_of_fold_proba(X, y, n_classes, folds=folds, seed=seed, C=C)
    if path is not None:
        try:
            tkio.remove_dead_temps(path)
            with tkio.atomic_path(path) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, proba, allow_pickle=False)
        except OSError as exc:
            log(f"warning: could not keep the out-of-fold probabilities in {path.parent} ({exc.strerror or exc}); the run goes on")
    return proba
