"""head, partial and finetune: a pretrained backbone with a new dense head, trained in the one
loop — images and texts alike; the backbone declares its blocks (a CNN's stages via timm's
group_matcher, a transformer's embeddings and layers), the modality its inputs.

- head: backbone frozen (weights and batch-norm statistics); the head trains for --epochs.
- partial: the top --unfreeze blocks train too, at --body-lr-mult of the head's rate for the
  top one and x --layer-decay per block below; the rest stays frozen, BN statistics included.
- finetune: every block trains, the learning rate falling block by block from the head to the
  stem (fastai's fine_tune, the Keras transfer-learning guide, the BERT recipe).
partial and finetune first warm the new head up alone for --head-epochs (so random-head
gradients do not wreck the pretrained layers). When the training inputs are not augmented (texts;
images with --augment none), the frozen body sees the same input every epoch: the head then
trains on the cached features, which is the same model at a fraction of the cost, before the
--epochs through the body; otherwise the warm-up runs through the frozen body, counted in --epochs.
"""
from __future__ import annotations

from .context import Context, Trained, cached_features


def _on_features(ctx: Context) -> bool:
    """Whether the training inputs are the same every epoch (no augmentation), so the frozen
    body's features can be cached."""
    return len(ctx.modality.augments) == 1 or ctx.config.augment in (None, "none")


def _model(ctx: Context):
    from ..heads import DenseHead

    cfg = ctx.config
    dim, n = int(ctx.backbone.num_features), len(ctx.dataset.classes)
    head = DenseHead(dim, n, cfg.hidden, batch_norm=cfg.batch_norm, dropout=cfg.dropout)
    shape = {"kind": "dense", "dim": dim, "n_classes": n, "hidden": cfg.hidden, "batch_norm": cfg.batch_norm, "dropout": cfg.dropout}
    return ctx.backbone.transfer_model(head, shape, train_body=True)


def _info(ctx: Context, info: dict, **extra) -> dict:
    cfg = ctx.config
    info.update(extra, head="dense", hidden=cfg.hidden, dropout=cfg.dropout, strategy=cfg.strategy, lr=cfg.lr, epochs=cfg.epochs)
    if len(ctx.modality.augments) > 1:
        info["augment"] = cfg.augment
    if "input_size" in ctx.data_config:
        info["image_size"] = int(ctx.data_config["input_size"][-1])
    return info


def head(ctx: Context) -> Trained:
    """Frozen backbone (weights and BN statistics), dense head trained."""
    from ..loop import Group, Plan, fit, freeze

    cfg = ctx.config
    model = _model(ctx)
    freeze(model.backbone)
    groups = [Group("head", list(model.head.parameters()), cfg.lr)]
    if _on_features(ctx):
        info, proba = fit(ctx, Plan(model, groups, [cfg.epochs], on_features=True), cached_features(ctx))
        return Trained(model, _info(ctx, info, trained_on="cached features"), proba)
    info, proba = fit(ctx, Plan(model, groups, [cfg.epochs]))
    return Trained(model, _info(ctx, info, trained_on=f"augmented {ctx.modality.unit}s"), proba)


def partial(ctx: Context) -> Trained:
    """The top --unfreeze blocks train with the head; the rest stays frozen."""
    return _train_body(ctx, ctx.config.unfreeze)


def finetune(ctx: Context) -> Trained:
    """Everything trains (head warmed up first), lower blocks at lower learning rates."""
    return _train_body(ctx, None)


def _train_body(ctx: Context, top: int | None) -> Trained:
    from ..loop import Group, Plan, Unfreeze, block_groups, fit, freeze, keep_bn_stats, unfreeze

    cfg = ctx.config
    model = _model(ctx)
    body = model.backbone
    blocks = ctx.backbone.blocks(body)
    trainable = blocks if top is None else blocks[len(blocks) - min(top, len(blocks)) :]
    freeze(body)
    if cfg.activation_checkpointing:
        ctx.backbone.enable_checkpointing(body)
    head_group = Group("head", list(model.head.parameters()), cfg.lr)
    # what stage 2 unfreezes (finetune: the whole body but what its features never use)
    targets = [m for m in body.children() if not {id(p) for p in m.parameters()} <= ctx.backbone.idle_parameters(body)] if top is None else [m for mods in trainable for m in mods]

    keep_stats = ctx.modality.batch_norm and not cfg.train_bn

    def open_up():
        for m in targets:
            unfreeze(m)
            if keep_stats:
                keep_bn_stats(m)

    warm = cfg.head_epochs or 0
    warmup_info = {}
    if warm and _on_features(ctx):
        # stage 1 on the cached features (its own loop and checkpoint), skipped when resuming stage 2
        resume = ctx.resume_state or {}
        if "last.pt" not in resume:
            w, _ = fit(ctx, Plan(model, [head_group], [warm], on_features=True, checkpoint_name="head.pt", label=f"{cfg.strategy} head warm-up"), cached_features(ctx))
            done = w["epochs_run"]
        else:
            done = int((resume.get("head.pt") or {}).get("epoch", warm))
        warmup_info = {"head_warmup_epochs": done, "head_warmup_on": "cached features"}
        open_up()
        stages, first, callbacks, early_from = [cfg.epochs], 0, [], 1
    elif warm:
        stages, first, early_from = [warm, cfg.epochs - warm], 1, warm + 1
        callbacks = [Unfreeze(targets, after_epoch=warm, keep_stats=keep_stats)]
        warmup_info = {"head_warmup_epochs": warm, "head_warmup_on": f"{ctx.modality.unit}s through the frozen body"}
    else:
        open_up()
        stages, first, callbacks, early_from = [cfg.epochs], 0, [], 1
    body_groups = block_groups(trainable, cfg.lr * cfg.body_lr_mult, cfg.layer_decay, first)
    if top is None and body_groups:  # parameters outside the blocks (e.g. a final conv) learn with the top block
        seen = {id(p) for g in body_groups for p in g.params} | ctx.backbone.idle_parameters(body)
        body_groups[-1].params += [p for p in body.parameters() if id(p) not in seen]
    plan = Plan(model, [head_group, *body_groups], stages, callbacks=callbacks, early_stop_from=early_from)
    info, proba = fit(ctx, plan)
    names = {id(m): n for n, m in body.named_modules()}
    extra = {"blocks_total": len(blocks), "unfrozen_blocks": len(trainable), "unfrozen_modules": [names[id(m)] for mods in trainable for m in mods],
             "lr_top_block": cfg.lr * cfg.body_lr_mult, "layer_decay": cfg.layer_decay, **warmup_info}
    return Trained(model, _info(ctx, info, **extra), proba)
