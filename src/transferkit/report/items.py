"""The run's items again, for pictures of them: the dataset reloaded from config.json, images
or texts by the display paths the run wrote, and the features the PCA/t-SNE plots use."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .facts import SPLITS, RunFacts

TSNE_MAX = 1000  # t-SNE runs on a stratified sample of at most this many items (seconds, not minutes)
PCA_MAX = 20000  # PCA plots at most this many points (a stratified sample beyond)
EMBED_TEST_MAX = 2000  # test items embedded with the run's model when no features are cached
MODEL_FEATURES_FILE = "report_features.npz"  # penultimate test features, saved so a re-render is quick


@dataclass
class DataView:
    """The dataset a run was trained on, reloaded; `ds` is None (and `error` says why) when it
    cannot be found any more."""

    ds: object | None
    index: dict[str, int]  # display path -> item index
    error: str | None = None

    @property
    def modality(self):
        from .. import modality as modalities

        return modalities.of(self.ds)

    @property
    def is_text(self) -> bool:
        """Whether items are drawn as text snippets (else as thumbnails)."""
        return self.ds is not None and self.modality.preview_kind == "snippet"

    def find(self, display_path: str) -> int | None:
        return self.index.get(display_path)

    def preview(self, i: int, size: int = 128):
        """How the item is drawn: a thumbnail (PIL image) or a text, as its modality says."""
        return self.modality.preview(self.ds, i, size)


def reload_dataset(facts: RunFacts, dataset=None) -> DataView:
    """The run's dataset: `dataset` when the caller has it in memory, else loaded again from
    the source recorded in config.json (file contents hashed, images not decoded)."""
    from ..errors import TransferkitError
    from ..modality import load_dataset

    cfg = facts.config
    ds, error = dataset, None
    if ds is None:
        sources = [s for s in (cfg.get("extra", {}).get("data_path"), cfg.get("data")) if s]
        for src in dict.fromkeys(sources):
            try:
                ds = _load_quietly(load_dataset, src, cfg)
                break
            except (TransferkitError, OSError, ValueError) as exc:
                error = f"the data at {src} could not be loaded again ({exc})"
    if ds is None:
        return DataView(None, {}, error or "the run does not record where its data is")
    if facts.classes and list(ds.classes) != list(facts.classes):
        return DataView(None, {}, f"the data at {cfg.get('data')} now has classes {list(ds.classes)[:8]}, not the run's {facts.classes[:8]}; it changed since training")
    index = {ds.display_path(i): i for i in range(len(ds))}
    return DataView(ds, index)


def _load_quietly(load_dataset, src, cfg: dict | None = None):
    # the data options the run was given (--text-column, --label-column, --data-root), as in training
    cols = {k: cfg[k] for k in ("text_column", "label_column", "data_root", "multi_label", "label_sep") if (cfg or {}).get(k) is not None}
    return load_dataset(src, check_images=False, **cols)  # hashing only: no decode of every image


def split_indices(facts: RunFacts, view: DataView, split: str) -> np.ndarray:
    """Item indices of a split, from splits.json's display paths (items no longer present are left out)."""
    if view.ds is None or not facts.splits:
        return np.zeros(0, dtype=np.int64)
    idx = [view.find(p) for p in facts.splits.get(split, [])]
    return np.asarray([i for i in idx if i is not None], dtype=np.int64)


def stratified_sample(labels: np.ndarray, n_max: int, seed: int = 0) -> np.ndarray:
    """Positions of at most `n_max` items, each class keeping its share (at least one each)."""
    labels = np.asarray(labels)
    if len(labels) <= n_max:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, sizes = np.unique(labels, return_counts=True)
    quota = n_max * sizes / len(labels)
    k = np.maximum(1, np.floor(quota)).astype(int)
    for j in np.argsort(-(quota - np.floor(quota))):  # largest remainders take the rest: exactly n_max
        if k.sum() >= n_max:
            break
        if k[j] < sizes[j]:
            k[j] += 1
    out = [rng.choice(np.flatnonzero(labels == c), size=min(kc, n), replace=False) for c, kc, n in zip(classes, k, sizes)]
    return np.sort(np.concatenate(out))


def samples_per_class(facts: RunFacts, view: DataView, k: int) -> list[tuple[str, list[int]]]:
    """Up to `k` training items per class, spread over the class (not just its first files)."""
    idx = split_indices(facts, view, "train")
    if not len(idx):
        idx = np.concatenate([split_indices(facts, view, s) for s in SPLITS])
    labels = np.asarray(view.ds.labels)[idx] if len(idx) else np.zeros(0, dtype=np.int64)
    out = []
    for c, name in enumerate(facts.classes):
        members = idx[labels == c]
        if len(members) > k:
            members = members[np.linspace(0, len(members) - 1, k).round().astype(int)]
        out.append((name, [int(i) for i in members]))
    return out


@dataclass
class Features:
    X: np.ndarray  # (N, D)
    y: np.ndarray  # (N,) class index
    what: str  # a sentence for the page: which features, of which items


def run_features(facts: RunFacts, view: DataView) -> tuple[Features | None, str]:
    """Features to draw PCA/t-SNE from, and a reason when there are none.

    In order: the run's cached backbone features (all items of the split, a cache hit); the
    penultimate test features saved by an earlier render; the run's model applied to the test
    set now (saved for next time)."""
    feats = _cached_backbone_features(facts, view)
    if feats is not None:
        return feats, ""
    saved = facts.dir / MODEL_FEATURES_FILE
    if saved.is_file():
        try:
            z = np.load(saved, allow_pickle=False)
            return Features(z["X"], z["y"], str(z["what"])), ""
        except (OSError, ValueError, KeyError):
            pass
    if view.ds is None:
        return None, f"no cached features for this run and the data is unavailable to embed ({view.error})"
    try:
        feats = _model_features(facts, view)
    except Exception as exc:  # noqa: BLE001 - any model/data problem: the page says so
        return None, f"no cached backbone features for this run, and its model could not embed the test set ({type(exc).__name__}: {str(exc)[:200]})"
    if feats is None:
        return None, "no cached backbone features for this run and no test items to embed"
    try:
        from .. import io as tkio

        with tkio.atomic_path(saved) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, X=feats.X, y=feats.y, what=np.array(feats.what))
    except OSError:
        pass  # a read-only run folder: computed again next time
    return feats, ""


def _cached_backbone_features(facts: RunFacts, view: DataView) -> Features | None:
    from ..features import FeatureCache

    where = facts.config.get("extra", {}).get("feature_cache")
    if not where or view.ds is None or not Path(where).is_dir():
        return None
    where = Path(where)
    cache = FeatureCache(where.parent.parent, where.name)
    idx = np.concatenate([split_indices(facts, view, s) for s in SPLITS])
    keys = [view.ds.keys[i] for i in idx]
    have = np.asarray([k in cache for k in keys], dtype=bool)
    if not have.any():
        return None
    idx = idx[have]
    X = cache.get([view.ds.keys[i] for i in idx])
    missing = int((~have).sum())
    what = f"{facts.backbone} backbone features (the run's cached transfer values) of all {len(idx):,} items, train + val + test"
    if missing:
        what += f"; {missing:,} items no longer in the cache are left out"
    return Features(X, np.asarray(view.ds.labels)[idx], what)


def _model_features(facts: RunFacts, view: DataView) -> Features | None:
    """Inputs of the model's last linear layer (its penultimate features) for the test set;
    for a tf-idf run, its TF-IDF vectors reduced by truncated SVD (LSA)."""
    import torch

    from ..loop.loop import forward
    from ..run import Run

    idx = split_indices(facts, view, "test")
    if not len(idx):
        return None
    labels = np.asarray(view.ds.labels)[idx]
    keep = stratified_sample(labels, EMBED_TEST_MAX)
    idx, labels = idx[keep], labels[keep]
    run = Run.load(facts.dir)
    model, mod, dc = run.model, run.modality, run.data_config
    raws = [mod.raw_item(view.ds, int(i), dc) for i in idx]
    if not isinstance(model, torch.nn.Module):
        from sklearn.decomposition import TruncatedSVD

        V = model.transform(raws)
        k = max(2, min(100, V.shape[1] - 1, len(raws) - 1))
        X = TruncatedSVD(n_components=k, random_state=0).fit_transform(V)
        return Features(X, labels, f"TF-IDF vectors of {len(idx):,} test {mod.unit}s reduced to {k} dimensions by truncated SVD (LSA); a tf-idf run has no encoder")
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not last:
        raise ValueError("the model has no final linear layer to take features before")
    grabbed: list[torch.Tensor] = []
    hook = last[-1].register_forward_hook(lambda mod_, inp, out: grabbed.append(inp[0].detach().flatten(1).float()))
    try:
        with torch.inference_mode():
            for s in range(0, len(raws), 64):
                forward(model, run.preprocessor.batch(raws[s : s + 64]), channels_last=mod.channels_last)
    finally:
        hook.remove()
    X = torch.cat(grabbed).numpy()
    what = f"penultimate features of the trained model (inputs of its last layer, {X.shape[1]} dims) for {len(idx):,} test {mod.unit}s; this run has no cached backbone features"
    return Features(X, labels, what)
