"""Deployment exports of a checkpoint: ONNX, TorchScript, torch.export and safetensors weights.

Every graph format wraps the model in `LogitsOnly`, so the exported program takes one (B, C_m, H, W)
float32 tensor per modality, named after the modality ("rgb", "depth", ... in the model's order), and
returns one (B, num_classes, H, W) float32 tensor named "logits" (pre-softmax scores at the input
resolution). Inputs are what the model saw in training: 0-255 images (BGR order for RGB), metres for
raw depth, normalised only where the checkpoint's `normalization` says so.

Batch, height and width are dynamic (H and W multiples of 16, adapnetpp.md §1). A model that pools to a
fixed grid (CMoDE "reference" gates, ssma-cmode.md §B.3) cannot be exported to ONNX with a dynamic
spatial size by the TorchScript-based exporter; its ONNX graph is exported at the fixed size instead
and the report says so.

Each export is checked against PyTorch (`verify=True`): ONNX with onnxruntime, TorchScript and
torch.export by reloading the written file, safetensors by reloading every tensor. The graph formats are
run at the export size (batch 1) and, when the spatial size is dynamic, at a second size (H+16, W+32,
batch 2); the largest absolute logit difference is reported and must stay within
`atol + NOISE_FACTOR * noise`, else the file is removed and `FusionsegError` is raised. `noise` is
PyTorch's own float32 rounding error on the same input, max |float32 logits - float64 logits|. Deep
networks amplify rounding: for AdapNet++ / SSMA at 64x128 with logits of 20-300, PyTorch float32 is
2e-3 to 8e-3 away from float64, and onnxruntime (which also folds BN into the convolutions) 2e-3 to
1e-2, so a flat 1e-3 cannot be met by any float32 runtime, while a structurally wrong graph (resize
mode, padding, a baked-in size) misses by 1e-1 or more. Where the noise is ~0 the bound is `atol`.
The two runtimes' errors add up and differ from input to input, and PyTorch's own error depends on
its thread count (the summation order): on SSMA at 64x128 with 2 threads onnxruntime was 1.59e-2
from PyTorch float32 whose noise was 3.5e-3, 4.3 times it. NOISE_FACTOR = 8 keeps the bound (here
2.9e-2) clear of such runs and still three times below what a wrong graph gives.

ONNX uses the TorchScript-based exporter (`dynamo=False`): the newer torch.export-based exporter needs
the `onnxscript` package, which fusionseg does not depend on.
"""

from __future__ import annotations

import copy
import io
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fusionseg import __version__
from fusionseg.data.normalization import normalize_input
from fusionseg.engine.checkpoint import checkpoint_input_size
from fusionseg.engine.export_formats import EXPORT_FORMATS, SUFFIXES
from fusionseg.errors import ConfigError, FusionsegError
from fusionseg.fsutil import atomic_write_bytes
from fusionseg.models.adapnet import OUTPUT_STRIDE, check_size_multiple
from fusionseg.registry import example_inputs

OUTPUT_NAME = "logits"
SIZE_MULTIPLE = OUTPUT_STRIDE  # adapnetpp.md §1
MAX_SIDE_PX = 8192  # upper bound of the dynamic H / W declared to torch.export
NOISE_FACTOR = 8.0  # parity tolerance = atol + NOISE_FACTOR * PyTorch's float32 noise (module docstring)


class LogitsOnly(nn.Module):
    """Make any fusionseg model a function of positional tensors returning plain logits.

    Graph formats name inputs by position, so the wrapper turns them back into the mapping every
    fusionseg model takes (`model({modality: x}) -> ExpertOutput`).

    Args:
        model: Any registered model kind (`fusionseg.registry`).
        modalities: Input names in the order of the positional arguments (the model's order).
    """

    def __init__(self, model: nn.Module, modalities: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.modalities = tuple(modalities)

    def forward(self, *inputs: Tensor) -> Tensor:
        """One (B, C_m, H, W) float tensor per modality -> (B, num_classes, H, W) logits."""
        return self.model(dict(zip(self.modalities, inputs))).logits


@dataclass(frozen=True)
class ParityCheck:
    """One comparison of the exported artefact with the PyTorch model.

    Attributes:
        batch: Batch size of the check input.
        size_hw: (H, W) in pixels (None for weight-only formats).
        max_abs_diff: Largest absolute difference of the logits (or weights).
        max_abs_value: Largest absolute PyTorch logit (scale of the comparison).
        tolerance: The bound the difference had to stay within (atol + NOISE_FACTOR * float32_noise).
        float32_noise: max |PyTorch float32 - PyTorch float64| logits on the same input.
        label_agreement: Share of pixels whose arg-max class is the same (None for weights).
    """

    batch: int
    size_hw: tuple[int, int] | None
    max_abs_diff: float
    max_abs_value: float
    tolerance: float
    float32_noise: float | None = None
    label_agreement: float | None = None

    @property
    def ok(self) -> bool:
        """True when the difference is within the tolerance."""
        return self.max_abs_diff <= self.tolerance


@dataclass(frozen=True)
class ExportReport:
    """Result of `export_model`.

    Attributes:
        checkpoint: The source checkpoint.
        out: The written file.
        format: One of `EXPORT_FORMATS`.
        kind: Checkpoint kind ("expert", "ssma", "cmode").
        inputs: Input name -> channels, in argument order.
        output: Output name ("logits").
        num_classes: C of the logits.
        opset: ONNX opset (None for other formats).
        size_hw: (H, W) the graph was traced at.
        dynamic_hw: Whether H and W are dynamic in the exported graph.
        checks: Parity checks run (empty with `verify=False`).
        bytes: File size.
        seconds: Wall time of export and checks.
        notes: Anything the user should know (e.g. why the spatial size is fixed).
    """

    checkpoint: Path
    out: Path
    format: str
    kind: str
    inputs: dict[str, int]
    output: str
    num_classes: int
    opset: int | None
    size_hw: tuple[int, int]
    dynamic_hw: bool
    checks: tuple[ParityCheck, ...]
    bytes: int
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def max_abs_diff(self) -> float | None:
        """Largest difference over all checks (None when nothing was verified)."""
        return max((c.max_abs_diff for c in self.checks), default=None)

    @property
    def verified(self) -> bool:
        """True when checks ran and all passed."""
        return bool(self.checks) and all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "checkpoint": str(self.checkpoint),
            "out": str(self.out),
            "format": self.format,
            "kind": self.kind,
            "inputs": dict(self.inputs),
            "output": self.output,
            "num_classes": self.num_classes,
            "opset": self.opset,
            "size_hw": list(self.size_hw),
            "dynamic_hw": self.dynamic_hw,
            "verified": self.verified,
            "max_abs_diff": self.max_abs_diff,
            "checks": [
                {
                    "batch": c.batch,
                    "size_hw": list(c.size_hw) if c.size_hw else None,
                    "max_abs_diff": c.max_abs_diff,
                    "max_abs_value": c.max_abs_value,
                    "tolerance": c.tolerance,
                    "float32_noise": c.float32_noise,
                    "label_agreement": c.label_agreement,
                    "ok": c.ok,
                }
                for c in self.checks
            ],
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------


def default_output_path(checkpoint: str | Path, format: str) -> Path:
    """`<checkpoint stem><suffix>` beside the checkpoint (e.g. best.pt -> best.onnx)."""
    path = Path(checkpoint)
    return path.with_name(path.stem + SUFFIXES[format])


def _check_size(size_hw: tuple[int, int], what: str) -> tuple[int, int]:
    h, w = (int(v) for v in size_hw)
    check_size_multiple(h, w, what=what)
    return h, w


def _example_inputs(
    payload: Mapping[str, Any], batch: int, size_hw: tuple[int, int], seed: int
) -> tuple[Tensor, ...]:
    """Seeded inputs in each modality's training range (`registry.example_inputs`: 0-255 images,
    0-10 m raw depth), normalised where the checkpoint normalises."""
    channels = {m: int(payload["in_channels"][m]) for m in payload["modalities"]}
    kinds = dict(payload.get("modality_kind") or {})
    examples = example_inputs(channels, batch, *size_hw, kinds=kinds, seed=seed)
    norm = payload.get("normalization") or {}
    tensors = []
    for name, x in examples.items():
        if name in norm:
            x = normalize_input(x, *norm[name], channel_axis=-3)  # (B, C, H, W)
        tensors.append(x)
    return tuple(tensors)


def _pools_to_fixed_grid(model: nn.Module) -> bool:
    """True when the model has adaptive pooling to a grid other than 1x1 (CMoDE reference gates)."""
    for module in model.modules():
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            size = module.output_size
            grid = (size, size) if isinstance(size, int) else tuple(size)
            if any(v not in (1, None) for v in grid):
                return True
    return False


def _compare(
    reference: Tensor, exact: Tensor, got: Tensor | np.ndarray, *, batch: int, size_hw: Any, atol: float
) -> ParityCheck:
    """Check `got` against the float32 `reference`, with `exact` (float64) measuring float32 noise."""
    got_t = torch.as_tensor(np.asarray(got)) if not isinstance(got, Tensor) else got
    if tuple(got_t.shape) != tuple(reference.shape):
        raise FusionsegError(
            f"exported model returned shape {tuple(got_t.shape)}, PyTorch {tuple(reference.shape)}"
        )
    scale = float(reference.abs().max())
    diff = float((got_t.float() - reference.float()).abs().max())
    noise = float((reference.double() - exact).abs().max())
    agree = float((got_t.argmax(dim=1) == reference.argmax(dim=1)).double().mean())
    return ParityCheck(batch, size_hw, diff, scale, atol + NOISE_FACTOR * noise, noise, agree)


# ---------------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------------


def _onnx_bytes(
    wrapper: LogitsOnly, example: tuple[Tensor, ...], *, opset: int, dynamic_hw: bool, meta: Mapping[str, str]
) -> bytes:
    import onnx

    names = list(wrapper.modalities)
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_hw else {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on the input checks, legacy-exporter notice
        torch.onnx.export(
            wrapper,
            example,
            buffer,
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_axes={**{n: axes for n in names}, OUTPUT_NAME: axes},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def _onnx_run(data: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(*inputs: Tensor) -> np.ndarray:
        return session.run([OUTPUT_NAME], {n: x.numpy() for n, x in zip(names, inputs)})[0]

    return run


def _torchscript_bytes(wrapper: LogitsOnly, example: tuple[Tensor, ...]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings; torch.jit's deprecation notice (see docs)
        traced = torch.jit.trace(wrapper, example, check_trace=False)
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def _torchscript_run(data: bytes) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    return lambda *inputs: module(*inputs)


def _torch_export_bytes(wrapper: LogitsOnly, example: tuple[Tensor, ...], *, dynamic_hw: bool) -> bytes:
    from torch.export import Dim

    # H and W are 16 x an integer (adapnetpp.md §1): declaring them so satisfies the models' input checks
    batch = Dim("batch", min=1, max=1024)
    if dynamic_hw:
        h16 = Dim("h16", min=1, max=MAX_SIDE_PX // SIZE_MULTIPLE)
        w16 = Dim("w16", min=1, max=MAX_SIDE_PX // SIZE_MULTIPLE)
        spec = {0: batch, 2: SIZE_MULTIPLE * h16, 3: SIZE_MULTIPLE * w16}
    else:
        spec = {0: batch}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(wrapper, example, dynamic_shapes=(tuple(spec for _ in example),))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def _torch_export_run(data: bytes) -> Any:
    module = torch.export.load(io.BytesIO(data)).module()
    return lambda *inputs: module(*inputs)


def _safetensors_bytes(model: nn.Module, meta: Mapping[str, str]) -> bytes:
    from safetensors.torch import save

    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    return save(state, metadata=dict(meta))


def safetensors_available() -> bool:
    """Whether the optional `safetensors` package is installed (`--format safetensors` needs it)."""
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------


def export_model(
    checkpoint: str | Path,
    out: str | Path | None = None,
    *,
    format: str = "onnx",
    opset: int = 17,
    size: tuple[int, int] | None = None,
    verify: bool = True,
    atol: float = 1e-3,
) -> ExportReport:
    """Export a checkpoint's model for deployment and check the result against PyTorch.

    Args:
        checkpoint: A fusionseg `.pt` checkpoint (expert, ssma or cmode).
        out: Output file; default the checkpoint's name with the format's suffix (`SUFFIXES`).
        format: "onnx", "torchscript", "torch-export" or "safetensors" (weights and metadata only).
        opset: ONNX opset version.
        size: (H, W) in pixels, multiples of 16, to trace at; default the checkpoint's training size.
        verify: Run the parity checks (module docstring).
        atol: Absolute part of the logit tolerance; `NOISE_FACTOR` times PyTorch's float32 noise is
            added (module docstring).

    Returns:
        An `ExportReport` with the parity figures.

    Raises:
        ConfigError: unknown format, bad size, or safetensors asked for but not installed.
        CheckpointError: unreadable checkpoint.
        FusionsegError: export failed, or the exported model differs from PyTorch beyond tolerance
            (the file is removed).
    """
    from fusionseg.engine.inference import load_for_inference

    if format not in EXPORT_FORMATS:
        raise ConfigError(f"format: {format!r} is not one of {', '.join(EXPORT_FORMATS)}")
    if format == "safetensors" and not safetensors_available():
        raise ConfigError("format: safetensors needs the safetensors package (pip install safetensors)")
    t0 = time.perf_counter()
    checkpoint = Path(checkpoint)
    out_path = Path(out) if out is not None else default_output_path(checkpoint, format)
    model, payload = load_for_inference(checkpoint, device="cpu")
    model = model.float().eval()
    kind = str(payload.get("kind"))
    modalities = list(payload["modalities"])
    size_hw = _check_size(size if size is not None else checkpoint_input_size(payload), "size")
    wrapper = LogitsOnly(model, modalities).eval()
    notes: list[str] = []
    dynamic_hw = format != "safetensors"
    if format == "onnx" and _pools_to_fixed_grid(model):
        dynamic_hw = False
        notes.append(
            "spatial size fixed at export size: adaptive pooling to a fixed grid (CMoDE reference gates) "
            "has no dynamic-size ONNX form; use cmode_gate=light for a size-independent graph"
        )
    meta = _export_metadata(payload, kind, modalities)
    example = _example_inputs(payload, 2 if format == "torch-export" else 1, size_hw, seed=0)
    data = _serialise(
        format, model, wrapper, example, payload, meta, opset=opset, dynamic_hw=dynamic_hw, source=checkpoint
    )
    atomic_write_bytes(out_path, data)
    checks: list[ParityCheck] = []
    if verify:
        checks = _verify_or_remove(format, data, model, wrapper, payload, size_hw, dynamic_hw, out_path, atol)
    return ExportReport(
        checkpoint=checkpoint,
        out=out_path,
        format=format,
        kind=kind,
        inputs={m: int(payload["in_channels"][m]) for m in modalities},
        output=OUTPUT_NAME,
        num_classes=int(payload["num_classes"]),
        opset=opset if format == "onnx" else None,
        size_hw=size_hw,
        dynamic_hw=dynamic_hw,
        checks=tuple(checks),
        bytes=len(data),
        seconds=time.perf_counter() - t0,
        notes=tuple(notes),
    )


def _export_metadata(payload: Mapping[str, Any], kind: str, modalities: Sequence[str]) -> dict[str, str]:
    """The string metadata stored in an exported file (ONNX metadata_props, safetensors header)."""
    return {
        "fusionseg_version": __version__,
        "kind": kind,
        "modalities": json.dumps(list(modalities)),
        "in_channels": json.dumps({m: int(payload["in_channels"][m]) for m in modalities}),
        "num_classes": str(int(payload["num_classes"])),
        "class_names": json.dumps(list(payload.get("class_names") or [])),
        "normalization": json.dumps(payload.get("normalization") or {}),
        "input_size_hw": json.dumps(list(checkpoint_input_size(payload))),
        "input_range": "0-255 images (BGR), metres for raw depth, then the normalization above",
    }


def _serialise(
    format: str,
    model: nn.Module,
    wrapper: LogitsOnly,
    example: tuple[Tensor, ...],
    payload: Mapping[str, Any],
    meta: Mapping[str, str],
    *,
    opset: int,
    dynamic_hw: bool,
    source: Path,
) -> bytes:
    """The exported file's bytes; exporter failures become one-line `FusionsegError`s."""
    try:
        with torch.no_grad():
            if format == "onnx":
                return _onnx_bytes(wrapper, example, opset=opset, dynamic_hw=dynamic_hw, meta=meta)
            if format == "torchscript":
                return _torchscript_bytes(wrapper, example)
            if format == "torch-export":
                return _torch_export_bytes(wrapper, example, dynamic_hw=dynamic_hw)
            return _safetensors_bytes(model, {**meta, "config": json.dumps(payload.get("config") or {})})
    except FusionsegError:
        raise
    except Exception as exc:  # noqa: BLE001 - exporter internals raise many types; report one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FusionsegError(f"{source}: {format} export failed: {first[:300]}") from exc


def _verify_or_remove(
    format: str,
    data: bytes,
    model: nn.Module,
    wrapper: LogitsOnly,
    payload: Mapping[str, Any],
    size_hw: tuple[int, int],
    dynamic_hw: bool,
    out_path: Path,
    atol: float,
) -> list[ParityCheck]:
    """Run the parity checks; on failure (or a failing check) remove the written file and raise."""
    try:
        checks = _verify(format, data, model, wrapper, payload, size_hw, dynamic_hw, atol=atol)
    except Exception:
        out_path.unlink(missing_ok=True)
        raise
    bad = [c for c in checks if not c.ok]
    if bad:
        out_path.unlink(missing_ok=True)
        c = bad[0]
        where = f" at batch {c.batch}, {c.size_hw[0]}x{c.size_hw[1]}" if c.size_hw else ""
        raise FusionsegError(
            f"{out_path}: exported {format} model differs from PyTorch{where}: max |diff| "
            f"{c.max_abs_diff:.3g} > tolerance {c.tolerance:.3g}; file removed"
        )
    return checks


def _verify(
    format: str,
    data: bytes,
    model: nn.Module,
    wrapper: LogitsOnly,
    payload: Mapping[str, Any],
    size_hw: tuple[int, int],
    dynamic_hw: bool,
    *,
    atol: float,
) -> list[ParityCheck]:
    """Parity checks of an exported artefact (module docstring)."""
    if format == "safetensors":
        from safetensors.torch import load

        loaded = load(data)
        own = model.state_dict()
        if set(loaded) != set(own):
            raise FusionsegError("safetensors file does not hold the model's tensor names")
        diff = max(
            (float((loaded[k].double() - v.double()).abs().max()) if v.numel() else 0.0)
            for k, v in own.items()
        )
        scale = max(float(v.double().abs().max()) for v in own.values() if v.numel())
        return [ParityCheck(0, None, diff, scale, 0.0)]  # weights must round-trip bit-exactly
    run = {"onnx": _onnx_run, "torchscript": _torchscript_run, "torch-export": _torch_export_run}[format](
        data
    )
    cases = [(1, size_hw)]
    if dynamic_hw:
        cases.append((2, (size_hw[0] + SIZE_MULTIPLE, size_hw[1] + 2 * SIZE_MULTIPLE)))
    exact_model = copy.deepcopy(wrapper).double()  # float64 twin: measures float32 rounding
    checks = []
    for i, (batch, hw) in enumerate(cases):
        inputs = _example_inputs(payload, batch, hw, seed=1 + i)
        with torch.no_grad():
            reference = wrapper(*inputs)
            exact = exact_model(*(x.double() for x in inputs))
            got = run(*inputs)
        checks.append(_compare(reference, exact, got, batch=batch, size_hw=hw, atol=atol))
    return checks
