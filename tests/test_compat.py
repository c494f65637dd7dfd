import sys

import pytest


def test_torchvision_timm_transformers_import():
    import transferkit  # noqa: F401
    import timm
    import torchvision

    assert torchvision.__version__
    assert timm.create_model("test_efficientnet", pretrained=False) is not None


def test_compat_reraises_other_errors(monkeypatch):
    from transferkit import _compat

    saved = {k: v for k, v in sys.modules.items() if k == "torchvision" or k.startswith("torchvision.")}
    for k in saved:
        monkeypatch.delitem(sys.modules, k)

    class Boom:
        def find_spec(self, name, path=None, target=None):
            if name == "torchvision":
                raise RuntimeError("some other failure")
            return None

    monkeypatch.setattr(sys, "meta_path", [Boom(), *sys.meta_path])
    with pytest.raises(RuntimeError, match="some other failure"):
        _compat.ensure_torchvision()
    for k, v in saved.items():
        sys.modules[k] = v
