"""Test-time augmentation (TTA) as a torch module, so it exports to ONNX / TorchScript with the model.

`TTA(model, views)` runs the wrapped classifier on several deterministic views of each image and
returns log(mean over views of softmax(logits)), shape (N, C). softmax of that output is exactly
the averaged probability (its rows already sum to 1, so softmax / argmax / log-softmax downstream
treat it like logits and get the average back). Averaging probabilities, not logits, is the usual
TTA (fastai's `tta`, timm's validate-time "ten-crop" experiments); a temperature applied inside
`model` (logits / T) acts per view, before the average, as it was calibrated.

Views (all of the model's input side H x W; the input is already preprocessed, float32 (N,3,H,W)):
- "flip" (2): identity, horizontal flip.
- "flip+crops" (12): identity and the four corner crops and the centre crop covering
  CROP_FRACTION (87.5 %) of each side, resized back to H x W (bilinear, align_corners=False, the
  resize ONNX Runtime reproduces), each also horizontally flipped. This is Krizhevsky et al.'s
  (2012) "ten-crop" (five crops + their mirrors, torchvision's TenCrop) plus the full image and its
  mirror, because our models are trained and calibrated on the full (already centre-cropped) view.
  Crop margins are even (side - crop = 2 * margin), so the centre crop is exactly centred and the
  view set is mirror-symmetric: TTA(flip(x)) == TTA(x) for every x (tests check).

All views go through `model` as one batch of (V*N) images: a single model call, so the exported
graph holds the network once (a loop would unroll V copies into the ONNX file); memory is V times
the batch's. Batch-norm must be in eval mode (the wrapper does not change the model's mode).
TTA is for single-label (softmax) classifiers; for multi-label sigmoids, average sigmoids instead.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

from .errors import TransferkitError

CROP_FRACTION = 0.875  # side of each crop / side of the image (timm's default crop_pct)
VIEWS = {"flip": 2, "flip+crops": 12}


def tta_views(name: str) -> int:
    """Number of views (model evaluations per image) of the named TTA set."""
    if name not in VIEWS:
        raise TransferkitError(f"unknown TTA views {name!r}; choose one of {sorted(VIEWS)}")
    return VIEWS[name]


def crop_boxes(h: int, w: int, fraction: float = CROP_FRACTION) -> list[tuple[int, int, int, int]]:
    """(top, left, height, width) of the centre and four corner crops, pixels.

    Margins are whole pixels rounded from (1 - fraction) / 2 of each side, and the crop is the side
    minus two margins, so opposite corners mirror each other and the centre is exact."""
    mh, mw = round(h * (1 - fraction) / 2), round(w * (1 - fraction) / 2)
    if mh < 1 or mw < 1:
        raise TransferkitError(f"images of {h}x{w} px are too small for {fraction:.1%} crops (no pixel to crop); use views='flip'")
    ch, cw = h - 2 * mh, w - 2 * mw
    return [(mh, mw, ch, cw), (0, 0, ch, cw), (0, 2 * mw, ch, cw), (2 * mh, 0, ch, cw), (2 * mh, 2 * mw, ch, cw)]


class TTA(torch.nn.Module):
    """Wraps `model` (images (N,3,H,W) float32 -> logits (N,C)); forward gives (N,C) log mean probability."""

    def __init__(self, model: torch.nn.Module, views: str = "flip"):
        super().__init__()
        tta_views(views)  # refuses an unknown name
        self.model = model
        self.views = views

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """All views of a batch, stacked view-major: (V*N, 3, H, W), rows v*N .. v*N+N-1 = view v."""
        if x.dim() != 4:
            raise TransferkitError(f"TTA expects images shaped (N, 3, H, W); got {tuple(x.shape)}")
        views = [x]
        if self.views == "flip+crops":
            # int(): under torch.onnx tracing H and W become constants of the graph (only the
            # batch axis is dynamic), which is what a fixed-input-size backbone needs anyway, so
            # the tracer's warning about exactly that is silenced here.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                h, w = int(x.shape[-2]), int(x.shape[-1])
            for t, l, ch, cw in crop_boxes(h, w):
                crop = x[:, :, t : t + ch, l : l + cw]
                views.append(F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False))
        views += [v.flip(-1) for v in views]
        return torch.cat(views, 0)

    @property
    def temperature(self) -> torch.Tensor:
        return self.model.temperature

    def set_temperature(self, t: float) -> None:
        self.model.set_temperature(t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = tta_views(self.views)
        logp = torch.log_softmax(self.model(self.expand(x)), dim=-1)  # (V*N, C)
        logp = logp.reshape(v, x.shape[0], logp.shape[-1])  # (V, N, C); N stays dynamic in ONNX
        # log(mean_v p_v) = logsumexp_v(log p_v) - log V: stable even for very confident views
        return torch.logsumexp(logp, dim=0) - math.log(v)
