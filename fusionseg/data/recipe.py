"""How each network input is made from raw sensor data: the recipe a checkpoint carries (issue 17).

A model trained on HHA of ip_basic-completed Kinect depth must see exactly that at deployment. Every
checkpoint records, per input modality, an `InputRecipe`: which product it is ("rgb", "nir", raw
"depth" in metres, or a prepare-depth product: "depth_filled", "hha", "jet", "normals", "evi",
"ndvi") and the settings that made it (completion method and its parameters, JET range, normal window,
the unit `depth_filled` was stored in). Training reads them from the `meta.json` that `prepare-depth`
wrote beside the lists (`recipes_for_data`); `import-deepscene` takes them from the zoo's input recipe.

`make_model_inputs` builds a frame's inputs from raw arrays with the same code as prepare-depth
(`data.prepare.products`), so on-the-fly inputs equal the prepared files pixel for pixel.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fusionseg.data.modality_specs import get_modality
from fusionseg.data.prepare.options import (
    DEPTH_PRODUCTS,
    GEOMETRY_PRODUCTS,
    META_KIND,
    META_NAME,
    PRODUCTS,
    SPECTRAL_PRODUCTS,
    PrepareOptions,
)
from fusionseg.errors import CheckpointError, ConfigError, DataError
from fusionseg.modalities.intrinsics import Intrinsics

# Products taken from the sensor as they are (no preparation).
RAW_PRODUCTS: tuple[str, ...] = ("rgb", "nir", "depth")
_SETTINGS = ("complete", "extrapolate", "blur", "max_depth_m", "jet_max_depth_m", "normals_radius_px")


@dataclass(frozen=True, kw_only=True)
class InputRecipe:
    """How one network input is made from raw data.

    Attributes:
        modality: The network input (`data.modality_specs` key).
        product: "rgb" (the colour image as captured), "nir", "depth" (raw depth in metres), or a
            prepare-depth product (`data.prepare.options.PRODUCTS`).
        complete, extrapolate, blur, max_depth_m: ip_basic settings (modalities.md §1.4/§1.5) applied to
            the raw depth before depth products.
        jet_max_depth_m: Depth at the top of the JET map (§2).
        normals_radius_px: Half-width of the normals' plane-fit window (§3.3).
        filled_scale_m: Metres per stored unit of the `depth_filled` files the model was trained on
            (on-the-fly depth is quantised the same way).
        source: Where the recipe comes from (a meta.json, a zoo entry), for messages.
    """

    modality: str
    product: str
    complete: str = "none"
    extrapolate: bool = False
    blur: str = "bilateral"
    max_depth_m: float = 100.0
    jet_max_depth_m: float = 7.0
    normals_radius_px: int = 3
    filled_scale_m: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.product not in RAW_PRODUCTS + PRODUCTS:
            known = ", ".join(RAW_PRODUCTS + PRODUCTS)
            raise ValueError(f"product: {self.product!r} is not one of {known}")
        if self.product == "depth_filled" and self.filled_scale_m is None:
            raise ValueError("filled_scale_m: needed by the depth_filled product")
        if self.product not in RAW_PRODUCTS:
            self.prepare_options()  # validates the settings (ConfigError)

    @property
    def needs(self) -> frozenset[str]:
        """Raw inputs this recipe reads: "rgb", "depth", "nir", "intrinsics"."""
        if self.product in ("rgb", "nir", "depth"):
            return frozenset({self.product})
        if self.product in SPECTRAL_PRODUCTS:
            return frozenset({"rgb", "nir"})
        extra = {"intrinsics"} if self.product in GEOMETRY_PRODUCTS else set()
        return frozenset({"depth", *extra})

    def prepare_options(self) -> PrepareOptions:
        """The prepare-depth options that make this product.

        Raises:
            ValueError: a raw product (nothing to prepare). ConfigError: bad settings.
        """
        if self.product in RAW_PRODUCTS:
            raise ValueError(f"product: {self.product!r} is taken as captured, nothing to prepare")
        wanted = {p: self.product == p for p in ("hha", "jet", "normals", "evi", "ndvi")}
        settings = {k: getattr(self, k) for k in _SETTINGS}
        if self.product == "depth_filled" and settings["complete"] == "none":
            raise ValueError("complete: the depth_filled product needs completion (fast or multiscale)")
        return PrepareOptions(**settings, **wanted, workers=1)

    def describe(self) -> str:
        """One line for people, e.g. "hha of depth completed with ip_basic multiscale"."""
        if self.product in RAW_PRODUCTS:
            return f"{self.modality}: the raw {self.product} image"
        how = f"ip_basic {self.complete} completion" if self.complete != "none" else "no completion"
        extra = f", JET top {self.jet_max_depth_m:g} m" if self.product == "jet" else ""
        return f"{self.modality}: {self.product} of depth with {how}{extra}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (as checkpoints store it)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "recipe") -> InputRecipe:
        """The recipe of `to_dict`.

        Raises:
            CheckpointError: not a recipe (names `source` and the problem).
        """
        try:
            return cls(**dict(data))
        except (TypeError, ValueError, ConfigError) as exc:
            raise CheckpointError(f"{source}: not a valid input recipe ({exc})") from None


def _raw_recipe(modality: str, source: str) -> InputRecipe | None:
    kind = get_modality(modality).kind
    if modality == "rgb":
        return InputRecipe(modality=modality, product="rgb", source=source)
    if kind == "gray":
        return InputRecipe(modality=modality, product="nir", source=source)
    if kind == "depth" and modality != "depth_filled":
        return InputRecipe(modality=modality, product="depth", source=source)
    return None


def recipes_from_prepare_meta(
    meta: Mapping[str, Any], modalities: Sequence[str], *, source: str
) -> dict[str, InputRecipe]:
    """Recipes of `modalities` from a prepare-depth meta.json's parameters; raw inputs as captured.

    Modalities neither raw nor made by that run get no recipe (nothing is guessed).
    """
    params = meta.get("parameters") if meta.get("kind") == META_KIND else None
    params = params if isinstance(params, dict) else {}
    made = set(params.get("products") or ())
    recipes: dict[str, InputRecipe] = {}
    for modality in modalities:
        if modality in made:
            settings = {k: params[k] for k in _SETTINGS if k in params}
            filled = params.get("depth_filled_scale_m") if modality == "depth_filled" else None
            recipes[modality] = InputRecipe(
                modality=modality, product=modality, filled_scale_m=filled, source=source, **settings
            )
        elif (raw := _raw_recipe(modality, source)) is not None:
            recipes[modality] = raw
    return recipes


def recipes_for_data(root: str | Path, modalities: Sequence[str]) -> dict[str, InputRecipe]:
    """The recipes of a training dataset's modalities, from the prepare-depth `meta.json` of its folder
    (`prepare-depth --out`) or of its `modalities/` folder (`prepare-dataset --modalities`), if any.

    Args:
        root: The dataset folder (`data.root`).
        modalities: The model's inputs.
    """
    from fusionseg.data.datasets.chain import MODALITIES_FOLDER

    for path in (Path(root) / META_NAME, Path(root) / MODALITIES_FOLDER / META_NAME):
        meta = _read_json(path)
        if meta.get("kind") == META_KIND:
            return recipes_from_prepare_meta(meta, modalities, source=f"prepare-depth {path}")
    return recipes_from_prepare_meta({}, modalities, source="raw inputs")


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object file's content; {} for a missing, unreadable or non-object file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _quantised_metres(depth_m: NDArray[np.float32], scale_m: float) -> NDArray[np.float32]:
    """Depth as a 16-bit file in `scale_m` holds it, read back in metres (as `data.io.read_depth`)."""
    from fusionseg.data.io import depth_to_png_units

    return depth_to_png_units(depth_m, depth_scale_m=scale_m).astype(np.float32) * np.float32(scale_m)


def _check_raw(name: str, array: np.ndarray | None, shape: tuple[int, ...] | None, source: str) -> None:
    if array is None:
        raise DataError(f"{source}: the model's recipe needs a raw {name} image, none given")
    if shape is not None and array.shape[:2] != shape:
        raise DataError(
            f"{source}: the {name} image is {array.shape[1]}x{array.shape[0]} but the other inputs are "
            f"{shape[1]}x{shape[0]} (width x height); register and resize it to the same size first"
        )


def make_model_inputs(
    recipes: Mapping[str, InputRecipe],
    *,
    bgr: NDArray[np.uint8] | None = None,
    depth_m: NDArray[np.float32] | None = None,
    nir: NDArray[np.uint8] | None = None,
    intrinsics: Intrinsics | None = None,
    source: str = "frame",
) -> dict[str, np.ndarray]:
    """A frame's network inputs from raw sensor arrays, made as prepare-depth makes its files.

    Args:
        recipes: modality -> recipe (`InputRecipe`), the model's inputs.
        bgr: (H, W, 3) uint8 colour image in OpenCV's B, G, R order.
        depth_m: (H, W) float32 raw depth in metres, 0 = missing.
        nir: (H, W) uint8 near-infrared image.
        intrinsics: 0-based pixel intrinsics of the depth at (H, W) (HHA, normals).
        source: Named in errors (a file or frame id).

    Returns:
        modality -> array as `cv2.imread` reads the prepared file: (H, W, 3) uint8 BGR for images,
        (H, W) uint8 for NIR, (H, W) float32 metres for depth (quantised like its file).

    Raises:
        DataError: a raw input the recipes need is missing or of another size (named).
    """
    needs = set().union(*(r.needs for r in recipes.values())) if recipes else set()
    given = {"rgb": bgr, "depth": depth_m, "nir": nir}
    shape: tuple[int, ...] | None = None
    for name in ("depth", "rgb", "nir"):
        if name in needs:
            _check_raw(name, given[name], shape, source)
            shape = shape or given[name].shape[:2]
    if "intrinsics" in needs and intrinsics is None:
        wanting = [m for m, r in recipes.items() if "intrinsics" in r.needs]
        raise DataError(f"{source}: {wanting[0]} needs the camera intrinsics (`intrinsics`), none given")
    inputs: dict[str, np.ndarray] = {}
    for modality, recipe in recipes.items():
        inputs[modality] = _make_one(recipe, bgr, depth_m, nir, intrinsics)
    return inputs


def _make_one(
    recipe: InputRecipe,
    bgr: np.ndarray | None,
    depth_m: np.ndarray | None,
    nir: np.ndarray | None,
    intrinsics: Intrinsics | None,
) -> np.ndarray:
    from fusionseg.data.prepare.products import depth_products, spectral_products

    product = recipe.product
    if product in ("rgb", "nir", "depth"):
        return {"rgb": bgr, "nir": nir, "depth": depth_m}[product]
    options = recipe.prepare_options()
    if product in SPECTRAL_PRODUCTS:
        return spectral_products(nir, bgr, [product])[product]
    assert product in DEPTH_PRODUCTS and depth_m is not None
    images, filled_m = depth_products(
        depth_m,
        options,
        [product] if product != "depth_filled" else [],
        intrinsics=intrinsics,
        filled_scale_m=None,
    )
    if product == "depth_filled":
        assert recipe.filled_scale_m is not None and math.isfinite(recipe.filled_scale_m)
        return _quantised_metres(filled_m, recipe.filled_scale_m)
    return images[product]
