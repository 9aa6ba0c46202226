"""`fusionseg benchmark pipeline`: raw frame to classes, timed per stage (issue 17, item 3).

What a robot pays per frame, not only the network: reading the colour image and the raw depth from PNG,
ip_basic completion, the depth encoding (HHA or JET), the model (normalisation, resize to its input
size, forward pass, softmax) and post-processing (labels at the frame's size, colour map). Every stage
runs the code `Segmenter.predict_raw` runs (`data.prepare.products`, `Segmenter`), on the real frames of
the shared data folder (NYU Kinect depth, KITTI sparse LiDAR) or synthetic frames of the same kind.

The model is a random-weight instance of a registered kind (speed does not depend on the weights) with
an input recipe of the chosen encoding, so no checkpoint is needed. Where CUDA exists, `--device cuda`
runs the model there and `--backend torch` the torch HHA back-end (`modalities.hha_torch`) on the GPU,
`--batch` frames at a time.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusionseg.benchmark.machine import isa_text, machine_info
from fusionseg.benchmark.preprocess import BenchFrame
from fusionseg.errors import ConfigError

STAGES = ("read", "completion", "encoding", "model", "postprocess")
ENCODINGS = ("hha", "jet")


@dataclass
class StageTimes:
    """Milliseconds per frame of each stage over the timed runs of one case."""

    case: str
    frame: str
    size: str
    runs: list[dict[str, float]] = field(default_factory=list)  # stage -> ms, one dict per run

    def median(self, stage: str) -> float:
        return float(np.median([r[stage] for r in self.runs]))

    def p90(self, stage: str) -> float:
        return float(np.percentile([r[stage] for r in self.runs], 90))

    @property
    def total_ms(self) -> list[float]:
        return [sum(r.values()) for r in self.runs]

    def to_dict(self) -> dict[str, Any]:
        totals = self.total_ms
        return {
            "case": self.case,
            "frame": self.frame,
            "size": self.size,
            "runs": len(self.runs),
            "median_ms": {s: round(self.median(s), 2) for s in STAGES},
            "p90_ms": {s: round(self.p90(s), 2) for s in STAGES},
            "total_median_ms": round(float(np.median(totals)), 2),
            "total_p90_ms": round(float(np.percentile(totals, 90)), 2),
            "frames_per_s": round(1e3 / float(np.median(totals)), 3),
        }


@dataclass
class PipelineBenchmarkReport:
    """Machine, settings and per-stage timings."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    cases: list[StageTimes]

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "settings": self.settings,
            "cases": [c.to_dict() for c in self.cases],
        }

    def to_markdown(self) -> str:
        """One Markdown section: the machine, the command's settings and a table of stage medians."""
        m, s = self.machine, self.settings
        lines = [
            f"### Pipeline: raw frame to classes ({s['model']}, {s['device']}, {s['backend']} back-end, "
            f"batch {s['batch']}, {s['threads']} thread(s))",
            "",
            f"Machine: {m.get('cpu')} ({isa_text(m)}), {m.get('cores')} cores, load "
            f"{m.get('loadavg_1min_start')} at the start"
            + (f", GPU {m['gpu']}" if m.get("gpu") else "")
            + f"; torch {m.get('torch')}, OpenCV {m.get('opencv')}, numba {m.get('numba')}. Model input "
            f"{s['model_size']}, ip_basic {s['complete']}, {s['repeat']} timed runs after {s['warmup']} "
            "warm-up, median (p90) ms per frame; the last column is the share of the frame's time spent "
            "outside the network (reading, completion, encoding, post-processing).",
            "",
            "| case | frame | " + " | ".join(STAGES) + " | total | frames/s | not model |",
            "|---|---|" + "---:|" * (len(STAGES) + 3),
        ]
        for c in self.cases:
            d = c.to_dict()
            cells = [f"{d['median_ms'][st]:.1f} ({d['p90_ms'][st]:.1f})" for st in STAGES]
            outside = 1 - d["median_ms"]["model"] / sum(d["median_ms"].values())
            lines.append(
                f"| {c.case} | {c.frame} {c.size} | " + " | ".join(cells)
                + f" | {d['total_median_ms']:.1f} | {d['frames_per_s']:.2f} | {100 * outside:.0f} % |"
            )  # fmt: skip
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> Path:
        """Append the Markdown section to a `.md` file (e.g. benchmarks/RESULTS.md), else write JSON."""
        import json

        from fusionseg.fsutil import atomic_write_text

        path = Path(path)
        if path.suffix.lower() == ".md":
            old = path.read_text(encoding="utf-8") if path.is_file() else ""
            atomic_write_text(
                path, old + ("\n" if old and not old.endswith("\n\n") else "") + self.to_markdown()
            )
        else:
            atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def _segmenter(
    model_name: str,
    encoding: str,
    complete: str,
    jet_max_m: float,
    size_hw: tuple[int, int],
    device: torch.device,
) -> Any:
    """A `Segmenter` over a random-weight model whose depth input is `encoding` of completed depth."""
    from fusionseg import registry
    from fusionseg.config import config_from_dict
    from fusionseg.data.recipe import InputRecipe
    from fusionseg.workflows.segmenter import Segmenter

    kind = registry.model_kind(model_name)
    modalities = ("rgb", encoding) if kind.fused else (encoding,)
    channels = dict.fromkeys(modalities, 3)
    fusion = {
        "experts": dict.fromkeys(modalities, "-"),
        "cmode_pool_hw": [size_hw[0] // 16, size_hw[1] // 16],
    }
    cfg = config_from_dict({"model": {"num_classes": 12}, "fusion": fusion})
    torch.manual_seed(0)
    model = registry.build_model(model_name, cfg, channels).to(device).eval()
    recipes = {"rgb": InputRecipe(modality="rgb", product="rgb")}
    recipes[encoding] = InputRecipe(
        modality=encoding, product=encoding, complete=complete, jet_max_depth_m=jet_max_m
    )
    payload = {
        "modalities": list(modalities),
        "in_channels": channels,
        "num_classes": 12,
        "input_size": list(size_hw),
        "class_names": [f"class{i}" for i in range(12)],
        "palette": [[(37 * i) % 256, (91 * i) % 256, (151 * i) % 256] for i in range(12)],
        "input_recipes": {m: recipes[m].to_dict() for m in modalities},
        "config": {"data": {"depth_sensor": "off"}},
    }
    return Segmenter(model, payload, device=device, mode="resize", depth_sensor="off")


def _write_frame(frame: BenchFrame, folder: Path) -> tuple[Path, Path]:
    """The frame as a robot's files: colour PNG and raw depth as 16-bit millimetres."""
    from fusionseg.data.io import write_depth, write_png

    rgb = write_png(folder / f"{frame.name}-rgb.png", frame.bgr)
    depth = write_depth(folder / f"{frame.name}-depth.png", frame.raw_m, depth_scale_m=1e-3)
    return rgb, depth


class _Stages:
    """A batch of copies of one frame through every stage, timed; `run()` gives stage -> ms per frame.

    With the numpy back-end each frame goes through completion and encoding in turn (the CPU path of
    `Segmenter.predict_raw`); with the torch back-end the batch is completed
    (`modalities.completion_torch`) and HHA-encoded (`modalities.hha_torch`) at once on the model's
    device. The model always sees the whole batch in one forward pass.
    """

    def __init__(
        self, seg: Any, frame: BenchFrame, files: tuple[Path, Path], backend: str, batch: int
    ) -> None:
        self.seg, self.frame, self.files, self.backend, self.batch = seg, frame, files, backend, batch
        self.encoding = next(m for m in seg.modalities if m != "rgb")
        self.options = seg.recipes[self.encoding].prepare_options()
        if backend == "torch":
            self.options = dataclasses.replace(
                self.options, completion_backend="torch", device=str(seg.device)
            )

    def _complete(self, raws: list[np.ndarray]) -> list[np.ndarray]:
        from fusionseg.data.prepare.products import complete_depth, complete_depth_batch_torch

        if self.backend != "torch" or self.options.complete == "none":
            return [complete_depth(raw, self.options) for raw in raws]
        return list(complete_depth_batch_torch(np.stack(raws), self.options))  # (B, H, W) at once

    def _encode(self, raws: list[np.ndarray], dense: list[np.ndarray]) -> list[np.ndarray]:
        from fusionseg.data.prepare.products import depth_products

        frame, options = self.frame, self.options
        if self.backend == "torch" and self.encoding == "hha":
            from fusionseg.modalities.hha_torch import hha_torch

            raw = np.stack(raws) if options.complete != "none" else None  # §3.1 mask, as depth_products
            hha = hha_torch(np.stack(dense), frame.intrinsics, raw_depth_m=raw, device=self.seg.device)
            return list(hha.flip(-1).cpu().numpy())  # (H, W, 3) B, G, R as prepare-depth writes it
        return [
            depth_products(
                r, options, [self.encoding], intrinsics=frame.intrinsics, filled_scale_m=None, completed_m=d
            )[0][self.encoding]
            for r, d in zip(raws, dense)
        ]

    def _model(self, bgrs: list[np.ndarray], encoded: list[np.ndarray]) -> torch.Tensor:
        """(B, C, h, w) probabilities of the batch in one forward pass."""
        from fusionseg.engine.inference import predict_probs

        seg = self.seg
        tensors = [
            seg._tensors(seg.network_inputs({"rgb": b, self.encoding: e})) for b, e in zip(bgrs, encoded)
        ]
        batch = {m: torch.cat([t[m] for t in tensors]) for m in seg.modalities}  # (B, C, h, w) each
        probs = predict_probs(seg.model, batch, mode="pad", nearest=seg.depth_like)
        if seg.device.type == "cuda":
            torch.cuda.synchronize(seg.device)
        return probs

    def run(self) -> dict[str, float]:
        import cv2

        from fusionseg.engine.inference import upsampled_labels
        from fusionseg.engine.visualize import colorize_labels

        times: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            times[stage] = (now - clock) * 1e3 / self.batch
            clock = now

        rgb_file, depth_file = self.files
        bgrs = [cv2.imread(str(rgb_file), cv2.IMREAD_COLOR) for _ in range(self.batch)]
        raws = [
            cv2.imread(str(depth_file), cv2.IMREAD_UNCHANGED).astype(np.float32) * np.float32(1e-3)
            for _ in range(self.batch)
        ]
        lap("read")
        dense = self._complete(raws)
        lap("completion")
        encoded = self._encode(raws, dense)
        lap("encoding")
        probs = self._model(bgrs, encoded)
        lap("model")
        for i, bgr in enumerate(bgrs):
            colorize_labels(upsampled_labels(probs[i], bgr.shape[:2]), self.seg.palette)
        lap("postprocess")
        return times


def run_pipeline_benchmark(
    *,
    model: str = "ssma",
    encodings: Sequence[str] = ("hha", "jet"),
    complete: str = "fast",
    model_size_hw: tuple[int, int] = (384, 768),
    data_dir: Path | None = None,
    repeat: int = 5,
    warmup: int = 1,
    device: str = "cpu",
    threads: int = 1,
    backend: str = "numpy",
    batch: int = 1,
) -> PipelineBenchmarkReport:
    """Time raw frame -> classes per stage on the benchmark frames.

    Args:
        model: Registered model kind ("adapnetpp", "ssma", "cmode"); fused kinds read rgb + the encoding.
        encodings: Depth encodings to time ("hha", "jet").
        complete: ip_basic completion of the raw depth ("none", "fast", "multiscale").
        model_size_hw: The network's input size (frames are resized to it, as the paper evaluates).
        data_dir: Shared data folder (NYU and KITTI frames); synthetic frames of the same sizes otherwise.
        repeat, warmup: Timed and untimed runs per case.
        device: "cpu" or "cuda".
        threads: torch and OpenCV threads.
        backend: "numpy" (the CPU default) or "torch" (completion by `modalities.completion_torch`
            and HHA by `modalities.hha_torch`, batched on `device`).
        batch: Copies of each frame processed together; times are per frame.

    Raises:
        ConfigError: an unknown encoding, backend or model, or CUDA asked for where there is none.
    """
    import cv2

    from fusionseg.benchmark.preprocess import KINECT_SIZE, KITTI_SIZE, real_frames, synthetic_frames

    bad = [e for e in encodings if e not in ENCODINGS]
    if bad or not encodings:
        raise ConfigError(f"encodings: {bad or 'none'} not among {', '.join(ENCODINGS)}")
    if backend not in ("numpy", "torch"):
        raise ConfigError(f"backend: {backend!r} is not numpy or torch")
    if batch < 1:
        raise ConfigError(f"batch: must be at least 1, got {batch}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda asked for but torch sees no CUDA device")
    dev = torch.device(device)
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    frames = (
        real_frames(data_dir)
        if data_dir is not None and data_dir.is_dir()
        else [
            synthetic_frames(*KINECT_SIZE)[0],
            synthetic_frames(*KITTI_SIZE)[1],
        ]
    )
    cases: list[StageTimes] = []
    with tempfile.TemporaryDirectory(prefix="fusionseg-bench-") as tmp:
        for encoding in encodings:
            seg = _segmenter(model, encoding, complete, 7.0, model_size_hw, dev)
            for frame in frames:
                run = _Stages(seg, frame, _write_frame(frame, Path(tmp)), backend, batch).run
                with torch.no_grad():
                    for _ in range(warmup):
                        run()
                    times = StageTimes(f"{model} {'+'.join(seg.modalities)}", frame.name, frame.size)
                    times.runs = [run() for _ in range(repeat)]
                cases.append(times)
    settings = {
        "model": model,
        "model_size": f"{model_size_hw[1]}x{model_size_hw[0]}",
        "complete": complete,
        "device": device,
        "threads": threads,
        "backend": backend,
        "batch": batch,
        "repeat": repeat,
        "warmup": warmup,
    }
    return PipelineBenchmarkReport(machine_info(cuda=dev.type == "cuda"), settings, cases)
