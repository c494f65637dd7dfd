"""Make torchvision importable on the CPU build of torch.

Why: with ``torch==2.13.0`` (CPU) pinned, pip resolves torchvision 0.28.0, a CUDA build whose
compiled ops library cannot load. Its Python code then registers fake kernels for
``torchvision::nms`` / ``torchvision::qnms`` and fails with "operator torchvision::nms does not
exist". timm and transformers import torchvision, so they fail too. We never call those ops
(detection only), so declaring the two op schemas with ``torch.library`` is enough for the
import to succeed. We act only on that exact error and re-raise anything else.

`install()` (run by ``import transferkit``) costs nothing: it puts a finder in front of the
import system that applies the fix the first time anything imports torchvision (timm,
transformers, a user's own code), so `import transferkit` and `transferkit --help` do not
import torch.
"""
from __future__ import annotations

import sys

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_lib = None  # keeps the torch.library.Library alive for the life of the process


def _define_missing_ops() -> None:
    global _lib
    import torch

    if _lib is None:
        _lib = torch.library.Library("torchvision", "FRAGMENT")
    for name, schema in _SCHEMAS.items():
        try:
            _lib.define(schema)
        except RuntimeError as exc:  # already defined by an earlier partial import
            if "already" not in str(exc) and "multiple times" not in str(exc):
                raise


def ensure_torchvision() -> None:
    """Import torchvision, defining the missing op schemas only on the known error."""
    if "torchvision" in sys.modules and hasattr(sys.modules["torchvision"], "__version__"):
        return
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return  # not installed: timm works without it for our purposes
    except RuntimeError as exc:
        if "operator torchvision::nms does not exist" not in str(exc):
            raise
        for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[mod]
        _define_missing_ops()
        import torchvision  # noqa: F401


class _TorchvisionFinder:
    """Meta-path finder: the first `import torchvision` goes through ensure_torchvision()."""

    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        uninstall()
        ensure_torchvision()
        module = sys.modules.get("torchvision")
        if module is None:
            return None
        import importlib.util

        return importlib.util.spec_from_loader(name, _Loaded(module), origin=getattr(module, "__file__", None), is_package=True)


class _Loaded:
    """A loader that hands back the module ensure_torchvision() already imported."""

    def __init__(self, module):
        self.module = module

    def create_module(self, spec):
        return self.module

    def exec_module(self, module):
        pass


_FINDER = _TorchvisionFinder()


def install() -> None:
    if "torchvision" not in sys.modules and _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)

