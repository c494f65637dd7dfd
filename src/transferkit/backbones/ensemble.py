"""Feature ensembles for the probe: several image backbones (and/or input sizes) whose pooled
features are concatenated, written `--backbone efficientnet_lite0+efficientnet_lite1@192`
(`+` between members, `@PX` a member's input side). Each member's features come from its own
cache (keyed by its weights and preprocessing), so a member shared with an earlier run costs
nothing; the saved model runs every member on its own preprocessing of the image and one head
on the concatenation, and exports to one ONNX file with one input per member."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import TransferkitError

SEP = "+"


def parse_members(spec: str) -> list[tuple[str, int | None]]:
    """'a+b@192' -> [('a', None), ('b', 192)]."""
    out = []
    for part in spec.split(SEP):
        name, _, size = part.strip().partition("@")
        if not name:
            raise TransferkitError(f"--backbone {spec}: an empty member; write e.g. efficientnet_lite0+efficientnet_lite1@192")
        if size:
            try:
                px = int(size)
            except ValueError:
                raise TransferkitError(f"--backbone {spec}: '@{size}' is not an input side in pixels; write e.g. {name}@192") from None
            if not 16 <= px <= 1024:
                raise TransferkitError(f"--backbone {spec}: '@{size}': use a side between 16 and 1024 pixels")
            out.append((name, px))
        else:
            out.append((name, None))
    return out


def is_ensemble(spec: str | None) -> bool:
    return bool(spec) and (SEP in spec or "@" in spec)


@dataclass
class EnsembleBackbone:
    """Several image backbones behind the Backbone interface the probe needs."""

    name: str
    members: list  # image Backbones, each with its own data config
    extra: dict = field(default_factory=dict)
    kind = "image"
    engines = ("auto", "torch", "onnx")

    @property
    def num_features(self) -> int:
        return sum(m.num_features for m in self.members)

    @property
    def weights_source(self) -> str:
        return "+".join(m.weights_source for m in self.members)

    @property
    def weights_id(self) -> str:
        return "+".join(m.weights_id for m in self.members)

    @property
    def data_config(self) -> dict:
        return {"members": [dict(m.data_config) for m in self.members]}

    def num_params(self) -> int:
        return sum(m.num_params() for m in self.members)

    def transfer_model(self, head, head_spec: dict | None = None, train_body: bool = False):
        from ..backbones.image import resolve_arch
        from ..models import FeatureEnsemble

        if train_body:
            raise TransferkitError(f"--backbone {self.name}: a feature ensemble is for --strategy probe (its members' features are cached); train one backbone with the other strategies")
        spec = {"kind": "feature_ensemble", "backbone": self.name, "members": [{"backbone": m.name, "arch": resolve_arch(m.name)} for m in self.members], "head": head_spec or {}}
        return FeatureEnsemble([m.model for m in self.members], head, spec)

    def save_files(self, folder) -> None:
        """Nothing beside the weights is needed to rebuild it."""

    def idle_parameters(self, body=None) -> set[int]:
        return set()
