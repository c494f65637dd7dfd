"""The top-k labels of a probability row, in one place: a stable sort, so ties keep the
classes' order everywhere (predict, serve, reports, exports agree)."""
from __future__ import annotations

import numpy as np


def top_k(p: np.ndarray, classes: list[str], k: int) -> tuple[list[str], list[float]]:
    """(labels, probabilities) of the k most probable classes, most probable first."""
    order = np.argsort(-np.asarray(p), kind="stable")[: max(1, min(int(k), len(classes)))]
    return [classes[int(t)] for t in order], [float(p[t]) for t in order]


def above(p: np.ndarray, classes: list[str], thresholds) -> tuple[list[str], list[float]]:
    """Label sets: (labels, probabilities) of every label at or above its threshold, most probable first."""
    p = np.asarray(p)
    order = [int(t) for t in np.argsort(-p, kind="stable") if p[t] >= thresholds[t]]
    return [classes[t] for t in order], [float(p[t]) for t in order]


def prediction_rows(classes: list[str], refs: list, proba_by_pos: dict, errors: dict, k: int, thresholds=None) -> list[dict]:
    """Rows for `refs` in order: top-k labels of the predicted ones, the reason of the others.
    Label sets (`thresholds` (L,) given): `labels` / `probs` are every label at or above its
    threshold (none is a valid answer), and `top_labels` / `top_probs` the k most probable."""
    rows = []
    for j, ref in enumerate(refs):
        if j in errors:
            rows.append({"path": ref.id, "labels": [], "probs": [], "error": errors[j], **({"top_labels": [], "top_probs": []} if thresholds is not None else {})})
        elif thresholds is not None:
            labels, probs = above(proba_by_pos[j], classes, thresholds)
            tl, tp = top_k(proba_by_pos[j], classes, k)
            rows.append({"path": ref.id, "labels": labels, "probs": probs, "top_labels": tl, "top_probs": tp, "error": ""})
        else:
            labels, probs = top_k(proba_by_pos[j], classes, k)
            rows.append({"path": ref.id, "labels": labels, "probs": probs, "error": ""})
    return rows


def predict_refs(proba, preprocessor, classes: list[str], refs, k: int = 5, batch_size: int = 32, input_error=Exception, thresholds=None):
    """One row per input ref ({'path', 'labels', 'probs', 'error'}), streamed in batches:
    `preprocessor` loads and prepares each input (raising `input_error` for an unusable one),
    `proba(batch)` gives the probabilities of a collated batch."""
    refs = list(refs)
    for s in range(0, len(refs), batch_size):
        chunk = refs[s : s + batch_size]
        items, pos, errors = [], [], {}
        for j, ref in enumerate(chunk):
            try:
                items.append(preprocessor.item(preprocessor.load(ref.payload)))
                pos.append(j)
            except input_error as exc:
                errors[j] = str(exc)
        probs = proba(preprocessor.collate(items)) if items else np.zeros((0, len(classes)))
        yield from prediction_rows(classes, chunk, dict(zip(pos, probs)), errors, k, thresholds)
