"""The published DeepScene models (issue 16, item 3): what each predicts and how to feed it.

AdapNet++: accuracies are the README's single-scale val mIoU at 768x384 with the released checkpoints
(`reference/adapnetpp.md` §13; the Cityscapes-19 figure is full-resolution val). File names follow the
README's pattern `adapnet++_<dataset>_<modality>.zip` (`reference/deepscene-tf.md` §1); only those marked
`verified` appear literally in it.

SSMA: the SSMA README's nine released fusion checkpoints and their single-scale val mIoU at 768x384
(`reference/ssma-cmode.md` §A.8); their zip names are spelled out in that README (`verified`). The
Cityscapes-19 SSMA result (val 82.19) has no released checkpoint. CMoDE: its README publishes no
models, so the zoo has no CMoDE entry (`import-deepscene --model cmode` converts one of your own).

"depth" models read depth as a JET colour image (fusionseg modality `jet`); the recipes follow
`reference/modalities.md` §2 (stated by the maintainers for ScanNet, consistent with the Synthia samples,
assumed for Freiburg Forest). A fused model's modalities are in fusion order: the first is the TF
graph's `rgb` expert, the second its `depth` expert (`reference/deepscene-tf.md` §7).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fusionseg.errors import ConfigError

_BGR = "8-bit BGR as cv2.imread reads it, resized to 768x384 (W x H)"
_JET = (
    "JET of ip_basic-completed depth, depth / 7 m * 255 clipped (the maintainers' recipe): "
    "fusionseg prepare-depth --complete multiscale --jet --jet-max-depth 7"
)
_JET_CITYSCAPES = (
    "inverted JET (near = red) of Cityscapes' disparity; the exact normalisation is unpublished "
    "(reference/modalities.md §2.1 [unverified]); prepare-depth has no inverted JET yet"
)
_JET_SUN = (
    "JET of the raw depth, depth / 7 m * 255 clipped (no completion for SUN RGB-D): "
    "fusionseg prepare-depth --jet --jet-max-depth 7"
)
_HHA = (
    "HHA of ip_basic-completed depth: fusionseg prepare-depth --complete multiscale --hha "
    "(camera intrinsics needed)"
)
_HHA_SUN = "HHA of the raw depth (no completion for SUN RGB-D): fusionseg prepare-depth --hha"
_EVI = "EVI from the NIR and RGB images: fusionseg prepare-depth --evi"
# The settings behind each recipe text (InputRecipe fields), where the recipe is known exactly.
_PREPARE: dict[str, dict[str, Any]] = {
    _JET: {"complete": "multiscale", "jet_max_depth_m": 7.0},
    _JET_SUN: {"complete": "none", "jet_max_depth_m": 7.0},
    _HHA: {"complete": "multiscale"},
    _HHA_SUN: {"complete": "none"},
    _EVI: {},
}


@dataclass(frozen=True)
class ZooModel:
    """One published model.

    Attributes:
        name: Our name for it (`import-deepscene --zoo NAME`).
        file: The zoo's zip name; `verified` says whether the README spells it out.
        model: The model kind ("adapnetpp" or "ssma", `fusionseg.registry`).
        dataset: `fusionseg.data.catalog` dataset (its class list and count).
        modalities: fusionseg modalities of the inputs, in fusion order (one for AdapNet++).
        easpp_rates: eASPP rates of the model (of each expert).
        published_miou: README val mIoU in % (None where none is published).
        recipe: How to make the inputs from raw data (one `modality: recipe` part per non-RGB input).
        prepare: modality -> the prepare-depth settings of that recipe (`data.recipe.InputRecipe` fields:
            complete, jet_max_depth_m), for the inputs whose recipe is known exactly; recorded as the
            imported checkpoint's input recipes, so `predict --raw` makes them on the fly. RGB needs
            none; Cityscapes' inverted JET is unverified and gets none.
    """

    name: str
    file: str
    verified: bool
    model: str
    dataset: str
    modalities: tuple[str, ...]
    easpp_rates: tuple[int, int, int]
    published_miou: float | None
    recipe: str
    prepare: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "modalities": list(self.modalities), "easpp_rates": list(self.easpp_rates)}


def _zoo_modality(modality: str) -> str:
    """The zoo's word for a fusionseg modality (JET images are its "depth")."""
    return {"jet": "depth"}.get(modality, modality)


def _entry(token: str, dataset: str, modality: str, miou: float | None, recipe: str, **kw: Any) -> ZooModel:
    file = f"adapnet++_{token}_{_zoo_modality(modality)}.zip"
    verified = file in (
        "adapnet++_cityscapes_rgb.zip",
        "adapnet++_cityscapes_19_hha.zip",
        "adapnet++_forest_evi.zip",
    )
    name = f"adapnetpp-{token.replace('_', '')}-{_zoo_modality(modality)}"
    rates = kw.get("easpp_rates", (3, 6, 12))
    prepare = {modality: _PREPARE[recipe]} if recipe in _PREPARE else {}
    return ZooModel(name, file, verified, "adapnetpp", dataset, (modality,), rates, miou, recipe, prepare)


def _ssma(token: str, dataset: str, second: str, miou: float, recipe: str) -> ZooModel:
    """An SSMA release: RGB (modality 1, TF scope `rgb`) fused with `second` (scope `depth`)."""
    pair = f"rgb_{_zoo_modality(second)}"
    name = f"ssma-{token.replace('scannetv2', 'scannet')}-{pair.replace('_', '-')}"
    prepare = {second: _PREPARE[recipe]} if recipe in _PREPARE else {}
    recipe = f"rgb: {_BGR}; {second}: {recipe}"
    file = f"{token}_ssma_{pair}.zip"
    return ZooModel(name, file, True, "ssma", dataset, ("rgb", second), (3, 6, 12), miou, recipe, prepare)


ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in (
        _entry("cityscapes", "cityscapes11", "rgb", 80.77, _BGR),
        _entry("cityscapes", "cityscapes11", "jet", 65.01, _JET_CITYSCAPES),
        _entry("cityscapes", "cityscapes11", "hha", 67.63, _HHA),
        _entry("synthia", "synthia", "rgb", 86.68, _BGR),
        _entry("synthia", "synthia", "jet", 87.87, _JET),
        _entry("sun", "sunrgbd", "rgb", 37.98, _BGR),
        _entry("sun", "sunrgbd", "jet", 34.28, _JET_SUN),
        _entry("sun", "sunrgbd", "hha", 34.59, _HHA_SUN),
        _entry("scannet", "scannet", "rgb", 52.92, _BGR),
        _entry("scannet", "scannet", "jet", 53.80, _JET),
        _entry("scannet", "scannet", "hha", 54.19, _HHA),
        _entry("forest", "freiburg_forest", "rgb", 83.18, _BGR),
        _entry("forest", "freiburg_forest", "jet", 73.93, _JET),
        _entry("forest", "freiburg_forest", "evi", 80.96, _EVI),
        _entry("cityscapes_19", "cityscapes19", "rgb", 81.24, _BGR, easpp_rates=(6, 12, 18)),
        _entry("cityscapes_19", "cityscapes19", "hha", None, _HHA, easpp_rates=(6, 12, 18)),
        _ssma("cityscapes", "cityscapes11", "jet", 82.29, _JET_CITYSCAPES),
        _ssma("cityscapes", "cityscapes11", "hha", 82.64, _HHA),
        _ssma("synthia", "synthia", "jet", 91.25, _JET),
        _ssma("sun", "sunrgbd", "jet", 43.9, _JET_SUN),
        _ssma("sun", "sunrgbd", "hha", 44.3, _HHA_SUN),
        _ssma("scannetv2", "scannet", "jet", 66.29, _JET),
        _ssma("scannetv2", "scannet", "hha", 66.34, _HHA),
        _ssma("forest", "freiburg_forest", "jet", 83.81, _JET),
        _ssma("forest", "freiburg_forest", "evi", 83.9, _EVI),
    )
}


def zoo_model(name: str) -> ZooModel:
    """The zoo entry `name`; ConfigError listing the known names."""
    try:
        return ZOO[name]
    except KeyError:
        raise ConfigError(f"zoo: unknown model {name!r} (known: {', '.join(ZOO)})") from None
