"""`fusionseg predict`: segment image files of any size with a checkpoint and write label maps."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusionseg.engine.inference import Mode
from fusionseg.errors import DataError
from fusionseg.modalities.intrinsics import Intrinsics
from fusionseg.workflows.segmenter import NATIVE_MEGAPIXELS, Segmenter

LIST_SUFFIXES = (".txt", ".lst", ".list")
RAW_ORDER = ("rgb", "depth", "nir")  # raw inputs; the first one needed is what INPUTS hold


@dataclass(frozen=True)
class PredictFrame:
    """One frame to predict: an id and a file per modality (model inputs, optionally "rgb")."""

    id: str
    files: dict[str, Path]


@dataclass(frozen=True)
class PredictedFrame:
    """What `predict_files` wrote for one frame.

    Attributes:
        id: Frame id (input file stem, made unique).
        inputs: Modality -> file read.
        size_hw: Input (and output) size in pixels.
        outputs: "labels" (raw ids PNG), "color" (palette PNG), "overlay" (when an RGB image exists).
        class_fractions: Class name -> share of the frame's pixels.
    """

    id: str
    inputs: dict[str, Path]
    size_hw: tuple[int, int]
    outputs: dict[str, Path]
    class_fractions: dict[str, float]


@dataclass(frozen=True)
class PredictSummary:
    """Result of `predict_files`."""

    checkpoint: Path
    out_dir: Path
    mode: str
    frames: list[PredictedFrame]
    seconds: float
    failures: list[tuple[str, str]] = field(default_factory=list)  # (frame id, one-line reason)
    inputs: list[str] = field(default_factory=list)  # how each model input is made (Segmenter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "out_dir": str(self.out_dir),
            "mode": self.mode,
            "inputs": list(self.inputs),
            "seconds": round(self.seconds, 3),
            "failed": [{"id": i, "error": e} for i, e in self.failures],
            "frames": [
                {
                    "id": f.id,
                    "inputs": {k: str(v) for k, v in f.inputs.items()},
                    "size_hw": list(f.size_hw),
                    "outputs": {k: str(v) for k, v in f.outputs.items()},
                    "class_fractions": {k: round(v, 4) for k, v in f.class_fractions.items()},
                }
                for f in self.frames
            ],
        }


def _image_files(folder: Path) -> list[Path]:
    from fusionseg.data.listfile import IMAGE_SUFFIXES

    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _find_by_stem(folder: Path, stem: str) -> Path | None:
    from fusionseg.data.listfile import IMAGE_SUFFIXES

    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def collect_frames(
    inputs: Sequence[str | Path],
    *,
    primary: str,
    needed: Sequence[str],
    modality_dirs: Mapping[str, str | Path] | None = None,
) -> list[PredictFrame]:
    """Expand files, folders and list files into frames with a file per needed modality.

    Args:
        inputs: Image files of the `primary` modality, folders of them, or list files (one path per line,
            or a `# columns:` header naming modality columns).
        primary: Modality of the given files (the model's first).
        needed: Modalities each frame must have (the model's); "rgb" is added when found, for overlays.
        modality_dirs: Modality -> folder holding that modality's file with the same stem.

    Raises:
        DataError: a missing input, an empty folder, or a needed modality without a file (names it).
    """
    from fusionseg.data.listfile import LABEL_COLUMN, read_header, read_list

    dirs = {k: Path(v) for k, v in (modality_dirs or {}).items()}
    for name, folder in dirs.items():
        if not folder.is_dir():
            raise DataError(f"`modality_dirs` {name}={folder}: not a folder")
    raw: list[dict[str, Path]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = _image_files(path)
            if not files:
                raise DataError(f"{path}: folder holds no image files")
            raw.extend({primary: f} for f in files)
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            has_header = read_header(path) is not None
            listed = read_list(path, columns=None if has_header else [primary], allow_absolute=True)
            raw.extend({c: f for c, f in s.files.items() if c != LABEL_COLUMN} for s in listed.samples)
        elif path.is_file():
            raw.append({primary: path})
        else:
            raise DataError(f"{path}: input not found")
    frames: list[PredictFrame] = []
    ids: dict[str, int] = {}
    for files in raw:
        anchor = files.get(primary) or next(iter(files.values()))
        for name in {*needed, "rgb", *dirs}:
            if name in files:
                continue
            if name in dirs:
                found = _find_by_stem(dirs[name], anchor.stem)
                if found is not None and found.resolve() not in {f.resolve() for f in files.values()}:
                    files[name] = found
                    continue
            if name in needed:
                where = f"in {dirs[name]}" if name in dirs else "(pass `modality_dirs` NAME=DIR)"
                raise DataError(f"{anchor}: no {name!r} file with stem {anchor.stem!r} {where}")
        frame_id = anchor.stem
        if frame_id in ids:
            ids[frame_id] += 1
            frame_id = f"{anchor.parent.name}_{anchor.stem}"
            if frame_id in ids:
                frame_id = f"{frame_id}_{ids[anchor.stem]}"
        ids.setdefault(frame_id, 0)
        frames.append(PredictFrame(id=frame_id, files=dict(files)))
    if not frames:
        raise DataError("no input frames given")
    return frames


def _png_bit_depth(path: Path) -> int | None:
    """Bit depth from a PNG header (None for other formats)."""
    from fusionseg.data.io import read_image_header

    header = read_image_header(path, unknown_ok=True)
    return header.bit_depth if header is not None and header.format == "PNG" else None


def read_predict_input(
    name: str, path: Path, *, depth_scale: str | float | None, depth_sensor: str = "any"
) -> np.ndarray:
    """Read one modality file for prediction as the training pipeline does.

    Depth files in 16 bits need `depth_scale` (never guessed); float depth files are taken as metres.
    Depth must fit the range of `depth_sensor` (`fusionseg.data.io.DEPTH_SENSORS` key, or "off"), so a
    wrong `depth_scale` is refused with the units that would fit.

    Returns:
        (H, W, C) float32 (0-255 images, metres for depth).

    Raises:
        DataError: 16-bit depth without a depth scale, a 16-bit file where a prepared 8-bit image
            (JET/HHA/...) is needed, or an unreadable file.
    """
    from fusionseg.data.dataset import read_modality
    from fusionseg.data.modality_specs import get_modality

    spec = get_modality(name)
    bits = _png_bit_depth(path)
    if spec.kind == "depth":
        if depth_scale is None:
            if bits == 16 or (bits is None and path.suffix.lower() not in (".tif", ".tiff", ".exr")):
                raise DataError(
                    f"{path}: the model reads this file as {name!r} depth; pass `depth_scale` with the "
                    "file's unit (mm, 0.1mm, 1e-4m, kitti, 1/256, cm, m or metres per unit): units are never "
                    "guessed"
                )
            depth_scale = 1.0  # float depth images hold metres
        return read_modality(name, path, depth_scale_m=depth_scale, depth_sensor=depth_sensor)
    if bits == 16:
        raise DataError(
            f"{path}: 16-bit image, but the checkpoint reads {name!r} as an 8-bit image; "
            + ("convert depth with `fusionseg prepare-depth` first" if name != "rgb" else "give an 8-bit RGB")
        )
    return read_modality(name, path, depth_scale_m=1.0)


def predict_files(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    depth_scale: str | float | None = None,
    modality_dirs: Mapping[str, str | Path] | None = None,
    mode: Mode = "resize",
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    device: str = "auto",
    alpha: float = 0.5,
    on_start: Callable[[int], None] | None = None,
    on_frame: Callable[[PredictedFrame], None] | None = None,
    depth_sensor: str = "auto",
    max_native_megapixels: float = NATIVE_MEGAPIXELS,
    raw: bool = False,
    intrinsics: str | Path | Intrinsics | None = None,
    intrinsics_one_based: bool = False,
) -> PredictSummary:
    """Segment image files of any size with a checkpoint and write label maps.

    Memory: "resize" (the default) holds the decoded frame, its float copy, and the full-size labels
    and colour images, never full-size class maps (`upsampled_labels` works in 64 MB bands): a 9000 x
    11000 RGB frame predicts in 2.5 GB. "pad" and "slide" run at the native size and keep (C, H, W)
    maps: frames above `max_native_megapixels` are refused there, naming the option.

    For each frame writes `labels/<id>.png` (raw class ids, 8-bit or 16-bit), `color/<id>.png`
    (palette colours) and, when an RGB image is available, `overlay/<id>.png`; all at the input's size.
    A bad frame (unreadable, wrong unit, sizes that differ) is listed and skipped, not fatal.

    Args:
        checkpoint: `.pt` file.
        inputs: Files, folders or list files of the model's first modality (see `collect_frames`).
        out_dir: Output folder.
        depth_scale: Unit of 16-bit depth inputs (name from `fusionseg.data.io.DEPTH_UNITS` or metres per
            unit); required when the model reads depth from 16-bit files.
        modality_dirs: Folders of the other modalities' files (matched by stem), incl. "rgb" for overlays.
        mode: "resize" to the checkpoint's training size (default), "pad" at native size to multiples of
            16, or "slide" training-size windows.
        scales: Inference scales. flip: Also average the flipped prediction.
        device: "auto", "cpu", "cuda", ...
        alpha: Label weight in overlays.
        on_start: Called with the number of frames. on_frame: Called after each frame.
        depth_sensor: Range depth inputs must fit (`fusionseg.data.io.DEPTH_SENSORS` key or "off");
            "auto" takes the one the checkpoint was trained with (its data.depth_sensor / dataset).
        max_native_megapixels: Largest frame (H x W / 1e6) predicted at native size ("pad", "slide").
        raw: The inputs are raw sensor frames (colour images, raw depth, NIR; `modality_dirs` keys rgb,
            depth, nir): the model's inputs (HHA, JET, completed depth, EVI, ...) are made on the fly
            with the checkpoint's recipe (`Segmenter.raw_inputs`), equal to prepare-depth's files.
        intrinsics: With `raw`, the depth camera's intrinsics for HHA and normals: "fx,fy,cx,cy"
            (0-based pixels), a JSON / K-matrix / KITTI calib file, or an `Intrinsics`; a per-frame
            `intrinsics` or `calib` list column is used otherwise.
        intrinsics_one_based: `intrinsics` use MATLAB's 1-based pixel centres (NYU toolbox values).

    Raises:
        CheckpointError, DataError: unreadable checkpoint or inputs (named).
    """
    from fusionseg.fsutil import ensure_writable_dir

    t0 = time.perf_counter()
    checkpoint, out = Path(checkpoint), Path(out_dir)
    seg = Segmenter.from_checkpoint(  # checks depth_scale before loading
        checkpoint, device=device, depth_scale=depth_scale, depth_sensor=depth_sensor, mode=mode,
        scales=tuple(scales), flip=flip, max_native_megapixels=max_native_megapixels,
    )  # fmt: skip
    needed, raw_intrinsics = _frame_inputs(seg, raw, intrinsics, intrinsics_one_based)
    job = _PredictJob(seg, out, alpha=alpha, raw=raw, intrinsics=raw_intrinsics)
    frames = collect_frames(inputs, primary=needed[0], needed=needed, modality_dirs=modality_dirs)
    ensure_writable_dir(out)
    if on_start is not None:
        on_start(len(frames))
    results, failures = job.predict_all(frames, on_frame=on_frame)
    seconds = time.perf_counter() - t0
    return PredictSummary(checkpoint, out, mode, results, seconds, failures, seg.describe_inputs())


def _frame_inputs(
    seg: Segmenter, raw: bool, intrinsics: str | Path | Intrinsics | None, one_based: bool
) -> tuple[list[str], Intrinsics | None]:
    """(the files each frame needs, the intrinsics of raw mode): the model's inputs, or with `raw` the
    raw inputs its recipes read (a checkpoint without recipes is refused)."""
    if not raw:
        return list(seg.modalities), None
    from fusionseg.data.prepare.intrinsics import resolve_intrinsics

    needs = seg.raw_needs()
    return [m for m in RAW_ORDER if m in needs], resolve_intrinsics(intrinsics, one_based=one_based)


def _frame_intrinsics(frame: PredictFrame, anchor: Path) -> Intrinsics:
    """A frame's intrinsics from its `intrinsics` / `calib` list column (prepare-depth's file formats)."""
    from fusionseg.data.prepare.intrinsics import read_intrinsics_file
    from fusionseg.data.prepare.options import INTRINSICS_COLUMNS

    for column in INTRINSICS_COLUMNS:
        if column in frame.files:
            return read_intrinsics_file(frame.files[column])
    raise DataError(
        f"{anchor}: the model's input needs camera intrinsics; pass `intrinsics` or give the list an "
        "intrinsics column"
    )


class _PredictJob:
    """Reads, predicts (through a `Segmenter`) and writes one frame at a time for `predict_files`."""

    def __init__(
        self, seg: Segmenter, out: Path, *, alpha: float, raw: bool, intrinsics: Intrinsics | None
    ) -> None:
        self.seg, self.out, self.alpha = seg, out, alpha
        self.names, self.palette = seg.class_names, seg.palette
        self.raw, self.intrinsics = raw, intrinsics

    def predict_all(
        self, frames: Sequence[PredictFrame], *, on_frame: Callable[[PredictedFrame], None] | None
    ) -> tuple[list[PredictedFrame], list[tuple[str, str]]]:
        """Predict every frame; a bad frame is listed with its reason and skipped, unless all are bad.

        Raises:
            DataError: no frame could be predicted (the first one's reason).
        """
        results: list[PredictedFrame] = []
        failures: list[tuple[str, str]] = []
        for frame in frames:
            try:
                result = self.predict(frame)
            except DataError as exc:
                failures.append((frame.id, str(exc)))
                continue
            results.append(result)
            if on_frame is not None:
                on_frame(result)
        if failures and not results:  # nothing could be predicted: the (first) reason is the error
            more = f" (all {len(failures)} frames failed)" if len(failures) > 1 else ""
            raise DataError(failures[0][1] + more)
        return results, failures

    def predict(self, frame: PredictFrame) -> PredictedFrame:
        """Read, predict and write one frame (DataError: a bad input file, named)."""
        seg = self.seg
        arrays = self._read_raw(frame) if self.raw else self._read_prepared(frame)
        try:
            labels = seg.label_map(arrays)  # (H, W)
        except DataError as exc:  # sizes or megapixels: name the frame's file
            raise DataError(f"{frame.files[seg.modalities[0]]}: {exc}") from None
        del arrays
        outputs = self._write(frame, labels)
        counts = np.bincount(labels.reshape(-1), minlength=len(self.names))
        fractions = {
            self.names[i]: float(c) / labels.size for i, c in enumerate(counts[: len(self.names)]) if c
        }
        h, w = labels.shape
        return PredictedFrame(
            id=frame.id, inputs=dict(frame.files), size_hw=(h, w), outputs=outputs, class_fractions=fractions
        )

    def _read_prepared(self, frame: PredictFrame) -> dict[str, np.ndarray]:
        """The model's inputs from their files, in network units ((H, W, C) float32)."""
        seg = self.seg
        return {
            m: read_predict_input(
                m, frame.files[m], depth_scale=seg.depth_scale_m, depth_sensor=seg.depth_sensor
            )
            for m in seg.modalities
        }

    def _read_raw(self, frame: PredictFrame) -> dict[str, np.ndarray]:
        """The model's inputs made from the frame's raw files with the checkpoint's recipe."""
        from fusionseg.data.io import read_gray, read_image

        seg, files = self.seg, frame.files
        anchor = next(iter(files.values()))
        depth = None
        if "depth" in files:
            depth = read_predict_input(
                "depth", files["depth"], depth_scale=seg.depth_scale_m, depth_sensor=seg.depth_sensor
            )[:, :, 0]
        intrinsics = self.intrinsics
        if intrinsics is None and "intrinsics" in seg.raw_needs():
            intrinsics = _frame_intrinsics(frame, anchor)
        made = seg.raw_inputs(
            rgb=read_image(files["rgb"]) if "rgb" in files and "rgb" in seg.raw_needs() else None,
            depth=depth,
            nir=read_gray(files["nir"]) if "nir" in files else None,
            intrinsics=intrinsics,
            source=str(anchor),
        )
        return seg.network_inputs(made, source=str(anchor))

    def _write(self, frame: PredictFrame, labels: np.ndarray) -> dict[str, Path]:
        """labels/, color/ and (with an RGB image of the frame's size) overlay/ PNGs of one frame."""
        from fusionseg.data.io import read_image, write_png
        from fusionseg.engine.visualize import colorize_labels, overlay_labels

        out = self.out
        color = colorize_labels(labels, self.palette)
        outputs = {
            "labels": write_png(out / "labels" / f"{frame.id}.png", labels),
            "color": write_png(out / "color" / f"{frame.id}.png", color),
        }
        if "rgb" in frame.files:
            try:
                rgb = read_image(frame.files["rgb"])
            except DataError:
                rgb = None
            if rgb is not None and rgb.shape[:2] == labels.shape[:2]:
                blend = overlay_labels(rgb, color, alpha=self.alpha)
                outputs["overlay"] = write_png(out / "overlay" / f"{frame.id}.png", blend)
        return outputs
