"""Robustness of fused models: dropped or degraded modalities, and what the fusion gates do.

* `Degradation` is the `input_transform` of `engine.inference.evaluate_model`: each listed
  modality is corrupted, deterministically for a given seed and sample position (independent of the
  batch size). Corruptions act in the modality's raw units (0-255 grey levels for 8-bit images, metres
  for depth); a normalised modality (`data.normalization`) is de-normalised, corrupted and normalised
  again. `--drop-modality NAME` is the "zero" corruption.
* `GateRecorder` hooks a fused model during evaluation and averages its gates: the SSMA sigmoid gate G
  (ssma-cmode.md §A.1 step 3) split into its per-modality channel blocks, per fused tap; the CMoDE
  expert weights per class (§B.1 step 3).
* `render_gate_plot` draws a `GateReport` as a horizontal bar chart (numpy + cv2, BGR uint8).

`workflows.robustness.evaluate_robustness` evaluates a checkpoint with them.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import cv2
import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from fusionseg.data.modality_specs import get_modality
from fusionseg.data.normalization import denormalize_input, normalize_input
from fusionseg.errors import ConfigError
from fusionseg.fusion.fused import CMoDEModel, ExpertEnsemble, SSMAModel

# Corruption strengths, in raw units (documented in docs/fusion.md).
NOISE_STD_GREY = 25.0  # "noise" on 8-bit images: additive Gaussian, grey levels
NOISE_REL_DEPTH = 0.05  # "noise" on depth: multiplicative Gaussian, relative std
NOISE_HOLES_DEPTH = 0.1  # "noise" on depth: share of pixels turned missing (0)
DARK_GAIN = 0.25  # "dark": image scaled by this gain ...
DARK_READ_NOISE_GREY = 3.0  # ... plus sensor read noise (grey levels)
FOG_TRANSMISSION = 0.35  # "fog": x * t + airlight * (1 - t), uniform over the image
FOG_AIRLIGHT_GREY = 204.0

DEGRADATIONS = ("noise", "zero", "dark", "fog")
_IMAGE_ONLY = ("dark", "fog")  # light-dependent: refused for depth (a range sensor does not see them)


def parse_degradations(
    degrade: Sequence[str] = (), drop: Sequence[str] = (), *, modalities: Sequence[str] | None = None
) -> dict[str, str]:
    """Turn `--degrade NAME=KIND` and `--drop-modality NAME` values into {modality: kind}.

    Args:
        degrade: "NAME=KIND" strings, KIND in `DEGRADATIONS`.
        drop: Modality names to zero (same as NAME=zero).
        modalities: The model's modalities; names outside them are refused when given.

    Returns:
        Modality -> corruption kind.

    Raises:
        ConfigError: malformed entry, unknown kind, unknown or repeated modality (named).
    """
    out: dict[str, str] = {}
    entries = [(text, *text.partition("=")) for text in degrade] + [
        (name, name, "=", "zero") for name in drop
    ]
    for text, name, sep, kind in entries:
        name, kind = name.strip(), kind.strip()
        if not sep or not name:
            raise ConfigError(f"degrade: {text!r}: expected MODALITY=KIND, e.g. depth=noise")
        if kind not in DEGRADATIONS:
            raise ConfigError(
                f"degrade: {text!r}: unknown corruption {kind!r} (known: {', '.join(DEGRADATIONS)})"
            )
        if modalities is not None and name not in modalities:
            raise ConfigError(
                f"`degrade`/`drop` {name!r}: the model's modalities are {', '.join(modalities)}"
            )
        if name in out:
            raise ConfigError(f"`degrade`/`drop`: modality {name!r} given twice")
        if kind in _IMAGE_ONLY and get_modality(name).kind == "depth":
            raise ConfigError(
                f"degrade: {name}={kind}: {kind!r} models lighting and applies to image modalities; "
                "use zero or noise for depth"
            )
        out[name] = kind
    return out


def corrupt(x: Tensor, kind: str, *, is_depth: bool, generator: torch.Generator) -> Tensor:
    """Corrupt one sample of one modality in raw units (new tensor; `x` is not modified).

    Args:
        x: (C, H, W) float: grey levels 0-255 for images, metres (0 = missing) for depth.
        kind: One of `DEGRADATIONS`.
        is_depth: `x` holds depth in metres.
        generator: Seeded CPU generator for the random parts.

    Returns:
        (C, H, W) float tensor of the same dtype.
    """
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "noise" and is_depth:
        rel = 1.0 + NOISE_REL_DEPTH * torch.randn(x.shape, generator=generator)
        holes = torch.rand(x.shape[-2:], generator=generator) < NOISE_HOLES_DEPTH  # (H, W)
        return torch.where(holes, 0.0, (x * rel.to(x)).clamp_min(0.0))
    if is_depth:
        raise ValueError(f"corruption {kind!r} does not apply to depth")
    if kind == "noise":
        return (x + NOISE_STD_GREY * torch.randn(x.shape, generator=generator).to(x)).clamp(0.0, 255.0)
    if kind == "dark":
        read = DARK_READ_NOISE_GREY * torch.randn(x.shape, generator=generator).to(x)
        return (x * DARK_GAIN + read).clamp(0.0, 255.0)
    if kind == "fog":
        return x * FOG_TRANSMISSION + FOG_AIRLIGHT_GREY * (1.0 - FOG_TRANSMISSION)
    raise ValueError(f"unknown corruption {kind!r} (known: {', '.join(DEGRADATIONS)})")


class Degradation:
    """`input_transform` for `evaluate_model`: corrupt some modalities of every batch.

    Sample k of the evaluation (counted over batches, in loader order) uses a generator seeded with
    (seed, k, modality), so results do not depend on the batch size. Use a fresh object per run.

    Args:
        kinds: Modality -> corruption kind (`parse_degradations`).
        seed: Base seed.
        normalization: `data.normalization` ((mean...), (std...)) per modality, undone before and
            redone after the corruption.
    """

    def __init__(
        self,
        kinds: Mapping[str, str],
        *,
        seed: int = 0,
        normalization: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    ) -> None:
        self.kinds = dict(kinds)
        self.seed = int(seed)
        self.normalization = dict(normalization or {})
        self.samples_seen = 0

    def __call__(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """{modality: (B, C, H, W)} -> a new dict with the listed modalities corrupted."""
        out = dict(inputs)
        batch = next(iter(inputs.values())).shape[0] if inputs else 0
        for name, kind in self.kinds.items():
            if name not in inputs:
                continue
            x = inputs[name].float()
            stats = self.normalization.get(name)  # (mean, std) per channel, or None
            is_depth = get_modality(name).kind == "depth"
            samples = []
            for i in range(batch):
                gen = torch.Generator().manual_seed(_sample_seed(self.seed, self.samples_seen + i, name))
                raw = denormalize_input(x[i], *stats, channel_axis=-3) if stats else x[i]  # (C, H, W) raw
                bad = corrupt(raw, kind, is_depth=is_depth, generator=gen)
                samples.append(normalize_input(bad, *stats, channel_axis=-3) if stats else bad)
            out[name] = torch.stack(samples).to(inputs[name].dtype)  # (B, C, H, W)
        self.samples_seen += batch
        return out


def _sample_seed(seed: int, index: int, modality: str) -> int:
    """A 63-bit seed from (seed, sample index, modality name)."""
    seq = np.random.SeedSequence([seed, index, zlib.crc32(modality.encode())])
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


# ---------------------------------------------------------------------------------------------------
# Gate report
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateReport:
    """Mean gate values of a fused model over an evaluation.

    Attributes:
        scheme: "ssma" or "cmode".
        modalities: Fusion order.
        rows: SSMA: fused taps ("easpp (stride 16)", ...); CMoDE: class names.
        values: (rows × modalities) means: SSMA sigmoid gate over pixels and the channels of each
            modality's block; CMoDE expert weight per class (rows sum to 1).
        images: Images averaged over, counted once per forward pass (an image evaluated at two scales
            and flipped counts four times).
    """

    scheme: str
    modalities: tuple[str, ...]
    rows: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]
    images: int

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {
            "scheme": self.scheme,
            "images": self.images,
            "modalities": list(self.modalities),
            "rows": {row: dict(zip(self.modalities, vals)) for row, vals in zip(self.rows, self.values)},
        }


class GateRecorder:
    """Context manager averaging the gates of a `SSMAModel` (SSMA) or `CMoDEModel` while it runs.

    Args:
        model: The fused model (hooks are removed on exit).
        class_names: Row names of a CMoDE report (default "class <c>").

    Example:
        with GateRecorder(model) as gates:
            evaluate_model(model, ...)
        report = gates.report()
    """

    def __init__(self, model: ExpertEnsemble, *, class_names: Sequence[str] | None = None) -> None:
        if not isinstance(model, (SSMAModel, CMoDEModel)):
            raise TypeError(f"gate report needs an SSMA or CMoDE model, got {type(model).__name__}")
        self.model = model
        self.class_names = list(class_names) if class_names is not None else None
        self.sums: dict[str, Tensor] = {}  # row -> (N,) float64 sums of per-image means
        self.images = 0
        self._handles: list[Any] = []

    def _add(self, row: str, per_image: Tensor, *, count: bool) -> None:
        total = per_image.detach().double().sum(0).cpu()  # (N,)
        self.sums[row] = self.sums[row] + total if row in self.sums else total
        if count:
            self.images += per_image.shape[0]

    def __enter__(self) -> GateRecorder:
        model = self.model
        n = len(model.modalities)
        if isinstance(model, SSMAModel):
            for i, (tap, block) in enumerate(model.fusion.items()):

                def ssma_hook(_m: nn.Module, _in: Any, gate: Tensor, tap: str = tap, first: bool = i == 0):
                    b = gate.shape[0]
                    per_mod = gate.detach().float().reshape(b, n, -1).mean(-1)  # (B, N): mean per block
                    self._add(tap, per_mod, count=first)

                self._handles.append(block.gate.register_forward_hook(ssma_hook))
        else:
            for c, gate_net in enumerate(model.fusion.gates):

                def cmode_hook(_m: nn.Module, _in: Any, weights: Tensor, c: int = c):
                    self._add(str(c), weights, count=c == 0)  # (B, N) expert weights of class c

                self._handles.append(gate_net.register_forward_hook(cmode_hook))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def report(self) -> GateReport:
        """Means over every forward pass seen (flips and scales of test-time augmentation included).

        Raises:
            ValueError: nothing was recorded.
        """
        if not self.images:
            raise ValueError("no forward pass was recorded")
        model = self.model
        if isinstance(model, SSMAModel):
            info = next(iter(model.experts.values())).feature_info
            keys = sorted(self.sums, key=lambda t: -info[t].stride)
            rows = tuple(f"{t} (stride {info[t].stride})" for t in keys)
            scheme = "ssma"
        else:
            keys = sorted(self.sums, key=int)
            names = self.class_names or [f"class {c}" for c in range(len(keys))]
            rows = tuple(names[int(k)] for k in keys)
            scheme = "cmode"
        values = tuple(tuple(float(v) / self.images for v in self.sums[k]) for k in keys)
        return GateReport(scheme, tuple(model.modalities), rows, values, self.images)


# modality colours of the plot (BGR), cycled
_COLOURS_BGR = ((200, 120, 30), (40, 140, 240), (80, 170, 60), (160, 60, 160), (60, 60, 200))


def render_gate_plot(report: GateReport, *, bar_px: int = 16, width_px: int = 640) -> NDArray[np.uint8]:
    """Horizontal grouped bar chart of a gate report, one group per row, one bar per modality.

    Args:
        report: The gate means (values in 0..1 are drawn on a 0..1 axis; SSMA gates and CMoDE weights
            both lie there).
        bar_px: Height of one bar.
        width_px: Image width.

    Returns:
        (H, W, 3) uint8 BGR image.
    """
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    n = len(report.modalities)
    label_w = 20 + max(cv2.getTextSize(r, font, scale, thick)[0][0] for r in report.rows)
    left, right, top = label_w, 70, 60
    group_h = n * bar_px + 12
    height = top + group_h * len(report.rows) + 30
    img = np.full((height, max(width_px, left + right + 200), 3), 255, np.uint8)
    plot_w = img.shape[1] - left - right
    if report.scheme == "ssma":
        title = "SSMA mean gate per level and modality"
    else:
        title = "CMoDE mean expert weight per class"
    cv2.putText(img, title, (10, 20), font, 0.55, (0, 0, 0), thick, cv2.LINE_AA)
    x = 10
    for i, name in enumerate(report.modalities):  # legend
        colour = _COLOURS_BGR[i % len(_COLOURS_BGR)]
        cv2.rectangle(img, (x, 32), (x + 14, 46), colour, -1)
        cv2.putText(img, name, (x + 20, 45), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
        x += 40 + cv2.getTextSize(name, font, scale, thick)[0][0]
    bottom = top + group_h * len(report.rows)
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):  # axis grid
        tx = left + int(round(tick * plot_w))
        cv2.line(img, (tx, top - 4), (tx, bottom), (220, 220, 220), 1)
        cv2.putText(img, f"{tick:g}", (tx - 8, bottom + 18), font, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
    for r, (row, vals) in enumerate(zip(report.rows, report.values)):
        y0 = top + r * group_h
        cv2.putText(img, row, (10, y0 + group_h // 2 + 4), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
        for i, value in enumerate(vals):
            y = y0 + 6 + i * bar_px
            length = int(round(float(np.clip(value, 0.0, 1.0)) * plot_w))
            colour = _COLOURS_BGR[i % len(_COLOURS_BGR)]
            cv2.rectangle(img, (left, y), (left + max(length, 1), y + bar_px - 3), colour, -1)
            cv2.putText(
                img,
                f"{value:.3f}",
                (left + length + 4, y + bar_px - 5),
                font,
                0.38,
                (0, 0, 0),
                1,
                cv2.LINE_AA,
            )
    return img
