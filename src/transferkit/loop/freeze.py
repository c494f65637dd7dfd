"""Freezing that holds: no gradients, and the frozen layers' batch-norm statistics and dropout
kept in inference mode even while the rest of the model trains.

A frozen base whose BN running statistics drift with every `model.train()` is the classic
transfer-learning bug; here `train_mode(model)` is what the loop calls instead of
`model.train()`, and it puts every frozen part back into eval mode.
"""
from __future__ import annotations

from torch import nn

_FROZEN = "_tk_frozen"  # module attribute: True frozen, False explicitly trainable, absent: inherit
_KEEP_STATS = "_tk_keep_stats"  # BN module attribute: trainable affine, running statistics kept


def _set_trainable(module: nn.Module, trainable: bool) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(trainable)
    for m in module.modules():
        m.__dict__.pop(_FROZEN, None)
    setattr(module, _FROZEN, not trainable)
    return module


def freeze(module: nn.Module) -> nn.Module:
    """No gradients for `module`; it stays in eval mode under `train_mode`."""
    return _set_trainable(module, False)


def unfreeze(module: nn.Module) -> nn.Module:
    """Gradients for every parameter of `module`; it trains under `train_mode`."""
    return _set_trainable(module, True)


def keep_bn_stats(module: nn.Module) -> None:
    """BN layers under `module` normalise with their stored (e.g. ImageNet) statistics and do not
    update them, while their scale and shift may still train (Keras' advice for fine-tuning)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            setattr(m, _KEEP_STATS, True)


def train_mode(model: nn.Module) -> nn.Module:
    """`model.train()`, then frozen parts (and BN layers whose statistics are kept) to eval.

    Modules come in pre-order, so a frozen parent is set to eval before a child that was
    unfrozen inside it is set back to train.
    """
    model.train()
    for m in model.modules():
        flag = m.__dict__.get(_FROZEN)
        if flag is True:
            m.eval()
        elif flag is False:
            m.train()
    for m in model.modules():
        if m.__dict__.get(_KEEP_STATS) or (isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters(recurse=False)) and m.affine):
            m.eval()
    return model


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
