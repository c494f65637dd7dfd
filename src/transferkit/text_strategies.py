"""Text strategies, named like the image ones: `probe` is shared (strategies.probe); here are
`tfidf` (the classical baseline), `head`, `partial` and `finetune` on a transformers encoder.

Why `head` trains from the feature cache: the encoder is frozen and texts get no
augmentation, so each text's pooled vector is the same every epoch; computing it once (the
probe's cache) and training the head on it is the same model as training through the frozen
encoder, at a fraction of the cost. `partial` and `finetune` warm their head up the same way,
then train through the encoder.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from .heads import MLPHead, _folded_linear, _standardiser
from .strategies import Context, Trained, cached_features
from .text_train import fit, length_grouped_batches

HEAD_EPOCHS = 30  # head on cached features: cheap epochs, early-stopped on val loss
ENCODER_EPOCHS = 3  # partial / finetune through the encoder (the usual BERT recipe: 2-4)
FEATURE_BATCH = 128  # cached feature vectors per head step


def tfidf(ctx: Context) -> Trained:
    """TF-IDF word + character n-grams and logistic regression; no backbone."""
    from .tfidf import TfidfModel

    cfg, ds, sp = ctx.config, ctx.dataset, ctx.splits
    texts = lambda idx: [ds.texts[i] for i in idx]  # noqa: E731
    t0 = time.perf_counter()
    model = TfidfModel(len(ds.classes), seed=cfg.seed).fit(texts(sp.train), ds.labels[sp.train], texts(sp.val), ds.labels[sp.val])
    ctx.timing["train_s"] = time.perf_counter() - t0
    proba = {name: model.predict_proba(texts(getattr(sp, name))) for name in ("train", "val", "test")}
    return Trained(model, model.info(), proba)


def _feature_batches(Z: torch.Tensor, y: torch.Tensor, seed: int):
    def batches(epoch: int):
        perm = torch.randperm(len(Z), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        for s in range(0, len(perm), FEATURE_BATCH):
            b = perm[s : s + FEATURE_BATCH]
            yield Z[b], y[b]

    return batches


def fit_head_on_features(ctx: Context, X: np.ndarray, epochs: int, desc: str = "head") -> tuple[MLPHead, list[dict]]:
    """The seed's head (dense → ReLU → dropout → classes) on cached features, standardisation
    folded into its first layer afterwards so it takes raw pooled vectors."""
    cfg, ds, sp = ctx.config, ctx.dataset, ctx.splits
    torch.manual_seed(cfg.seed)
    mu, sd = _standardiser(X[sp.train])
    Z = torch.from_numpy((X - mu) / sd)
    y = torch.from_numpy(ds.labels)
    head = MLPHead(X.shape[1], len(ds.classes), cfg.hidden, cfg.dropout)
    ztr, ytr = Z[sp.train], y[sp.train]
    val = (lambda: [(Z[sp.val], y[sp.val])]) if len(sp.val) else None
    steps = -(-len(sp.train) // FEATURE_BATCH)
    history = fit(head, [{"params": list(head.parameters()), "lr": cfg.lr}], _feature_batches(ztr, ytr, cfg.seed), steps, val, epochs, patience=5, desc=desc)
    head[0] = _folded_linear(head[0].weight.detach().numpy(), head[0].bias.detach().numpy(), mu, sd)
    return head.eval(), history


def head(ctx: Context) -> Trained:
    """Encoder frozen, new head trained (from the cached pooled vectors, see the module note)."""
    cfg, sp = ctx.config, ctx.splits
    X = cached_features(ctx)
    t0 = time.perf_counter()
    mlp, history = fit_head_on_features(ctx, X, cfg.epochs or HEAD_EPOCHS)
    ctx.timing["train_s"] = time.perf_counter() - t0
    with torch.no_grad():
        proba = {name: mlp(torch.from_numpy(X[getattr(sp, name)])).softmax(-1).numpy() for name in ("train", "val", "test")}
    info = {"head": "mlp", "hidden": cfg.hidden, "dropout": cfg.dropout, "dim": X.shape[1], "n_classes": len(ctx.dataset.classes), "trained_on": "cached pooled encoder features (encoder frozen)", "epochs_run": len(history), "history": history}
    return Trained(ctx.backbone.transfer_model(mlp), info, proba)


def encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    """The stack of transformer layers: the ModuleList holding the most parameters (BERT's
    encoder.layer, DistilBERT's transformer.layer, ...), found from the model's structure."""
    lists = [m for m in encoder.modules() if isinstance(m, nn.ModuleList) and len(m)]
    if not lists:
        raise ValueError(f"{type(encoder).__name__}: no stack of layers found to unfreeze")
    return max(lists, key=lambda m: sum(p.numel() for p in m.parameters()))


def param_groups(model, n_trainable: int | None, lr: float, body_mult: float, decay: float) -> tuple[list[dict], list[nn.Module]]:
    """Discriminative learning rates: the head at `lr`, the top encoder layer at lr × body_mult,
    each layer below × `decay` more, embeddings lowest. `n_trainable` top layers train (None:
    all, embeddings included). Returns the optimizer groups and the modules kept frozen."""
    enc = model.backbone
    layers = list(encoder_layers(enc))
    in_layers = {id(p) for layer in layers for p in layer.parameters()}
    groups = [{"params": list(model.head.parameters()), "lr": lr}]
    frozen: list[nn.Module] = []
    n = len(layers) if n_trainable is None else min(n_trainable, len(layers))
    for k, layer in enumerate(reversed(layers)):  # k = 0 is the top layer
        if k < n:
            groups.append({"params": list(layer.parameters()), "lr": lr * body_mult * decay**k})
        else:
            frozen.append(layer)
    rest = [p for name, p in enc.named_parameters() if id(p) not in in_layers and "pooler" not in name]
    if n_trainable is None:
        groups.append({"params": rest, "lr": lr * body_mult * decay ** len(layers)})
    for name, p in enc.named_parameters():
        p.requires_grad = False
    for g in groups:
        for p in g["params"]:
            p.requires_grad = True
    if n_trainable is not None:
        frozen += [m for name, m in enc.named_children() if not any(p.requires_grad for p in m.parameters())]
    return groups, frozen


def _train_encoder(ctx: Context, n_trainable: int | None, desc: str) -> Trained:
    from .model import text_logits

    cfg, ds, sp, bb = ctx.config, ctx.dataset, ctx.splits, ctx.backbone
    X = cached_features(ctx)
    t0 = time.perf_counter()
    # stage 1: warm the new head up on the cached vectors (encoder frozen), so stage 2 does
    # not push random-head gradients into the pretrained layers
    mlp, warm = fit_head_on_features(ctx, X, HEAD_EPOCHS, desc="head warm-up")
    model = bb.transfer_model(mlp)
    groups, frozen = param_groups(model, n_trainable, cfg.lr, cfg.body_lr_mult, cfg.layer_decay)
    lengths = ctx.lengths if ctx.lengths is not None else np.asarray([len(t) for t in ds.texts])
    y = torch.from_numpy(ds.labels)
    tr = sp.train

    def train_batches(epoch: int):
        rng = np.random.default_rng(cfg.seed * 1000 + epoch)
        for b in length_grouped_batches(lengths[tr], cfg.batch_size, rng):
            idx = tr[b]
            yield bb.tokenize([ds.texts[i] for i in idx]), y[idx]

    def val_batches():
        order = sp.val[np.argsort(-lengths[sp.val], kind="stable")]
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            yield bb.tokenize([ds.texts[i] for i in idx]), y[idx]

    steps = -(-len(tr) // cfg.batch_size)
    history = fit(model, groups, train_batches, steps, val_batches if len(sp.val) else None, cfg.epochs or ENCODER_EPOCHS, frozen=frozen, patience=2, desc=desc, progress_items=len(tr))
    ctx.timing["train_s"] = time.perf_counter() - t0
    for p in model.parameters():
        p.requires_grad = True
    t1 = time.perf_counter()
    proba = {}
    for name in ("train", "val", "test"):
        idx = getattr(sp, name)
        logits = text_logits(model, bb.tokenizer, bb.max_length, [ds.texts[i] for i in idx], cfg.batch_size)
        proba[name] = torch.from_numpy(logits).softmax(-1).numpy()
    ctx.timing["evaluate_s"] = time.perf_counter() - t1
    trainable = sum(p.numel() for g in groups for p in g["params"])
    info = {
        "head": "mlp", "hidden": cfg.hidden, "dropout": cfg.dropout, "dim": X.shape[1], "n_classes": len(ds.classes),
        "trainable_layers": "all" if n_trainable is None else n_trainable, "params_trained": trainable,
        "lr_head": cfg.lr, "lr_top_layer": cfg.lr * cfg.body_lr_mult, "layer_decay": cfg.layer_decay,
        "head_warmup_epochs": len(warm), "epochs_run": len(history), "history": history,
    }
    return Trained(model, info, proba)


def partial(ctx: Context) -> Trained:
    """Top `--unfreeze N` encoder layers and the head train; the rest stays frozen."""
    return _train_encoder(ctx, ctx.config.unfreeze, "partial")


def finetune(ctx: Context) -> Trained:
    """Everything trains (head warmed up first), lower layers at lower learning rates."""
    return _train_encoder(ctx, None, "finetune")
