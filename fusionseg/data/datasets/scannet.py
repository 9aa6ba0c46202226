"""ScanNet v2 (20 benchmark classes) for `fusionseg prepare-dataset scannet` (torch-free).

Official layout under `--root` (docs/datasets.md#scannet-v2), as `download-scannet.py` writes it:

* `scans/<scene>/<scene>.sens`: the RGB-D stream (format of ScanNet's `SensReader/python/SensorData.py`:
  header with 4x4 colour/depth intrinsics and extrinsics, then per frame a pose, time stamps, a
  compressed colour image (JPEG, 1296x968) and zlib-compressed uint16 depth (640x480, `depth_shift`
  units per metre, 1000 = mm)).
* `scans/<scene>/<scene>_2d-label-filt.zip`: `label-filt/<frame>.png`, 16-bit raw ScanNet ids.
* `scannetv2-labels.combined.tsv`: raw id (`id`) -> `nyu40id`; the benchmark keeps 20 NYU-40 ids
  (`BENCHMARK_NYU40_IDS`, `VALID_CLASS_IDS` of BenchmarkScripts/2d_evaluation), the rest is void.
* `scannetv2_train.txt`, `scannetv2_val.txt`: the official scene lists (Tasks/Benchmark of the ScanNet
  repository); test scenes have no labels and are never read.

Every `frame_step`-th frame with a label image is used (100 = the benchmark's 25k-frame set). Colour
is resized (area) to the depth size and labels (nearest) likewise, so depth stays as measured and the
depth camera's intrinsics describe every output image.
"""

from __future__ import annotations

import csv
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from numpy.typing import NDArray

from fusionseg.data.catalog import SCANNET, DatasetInfo
from fusionseg.data.datasets.base import FrameRef, RawFrame
from fusionseg.errors import DataError
from fusionseg.modalities.intrinsics import Intrinsics

LABEL_TSV = "scannetv2-labels.combined.tsv"
SPLIT_LISTS = {"train": "scannetv2_train.txt", "val": "scannetv2_val.txt"}
SCANS_DIR = "scans"
LABEL_ZIP_SUFFIX = "_2d-label-filt.zip"
LABEL_MEMBER_DIR = "label-filt"
# NYU-40 ids of the 20 benchmark classes, in the order of the catalog's SCANNET classes 1..20
# (ScanNet BenchmarkScripts/2d_evaluation/evalPixelLevelSemanticLabeling.py, VALID_CLASS_IDS).
BENCHMARK_NYU40_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
DEFAULT_FRAME_STEP = 100
SENS_VERSION = 4
_COLOUR_CODECS = {0: "raw", 1: "png", 2: "jpeg"}
_DEPTH_CODECS = {0: "raw_ushort", 1: "zlib_ushort", 2: "occi_ushort"}
_FRAME_HEADER = struct.Struct("<16f4Q")  # camera_to_world, colour/depth time stamps and byte sizes


@dataclass(frozen=True)
class SensHeader:
    """The header of a .sens file.

    Attributes:
        intrinsic_color, intrinsic_depth: (4, 4) float64 camera matrices, pixels.
        color_codec, depth_codec: "jpeg", "png", "raw" / "zlib_ushort", "raw_ushort".
        color_hw, depth_hw: Image sizes (rows, columns).
        depth_shift: Stored depth units per metre (1000: millimetres).
        num_frames: Frames in the file.
        frames_offset: Byte offset of the first frame.
    """

    intrinsic_color: NDArray[np.float64]
    intrinsic_depth: NDArray[np.float64]
    color_codec: str
    depth_codec: str
    color_hw: tuple[int, int]
    depth_hw: tuple[int, int]
    depth_shift: float
    num_frames: int
    frames_offset: int


def _read_exact(fh: BinaryIO, size: int, path: Path) -> bytes:
    data = fh.read(size)
    if len(data) != size:
        raise DataError(f"{path}: truncated .sens file")
    return data


def read_sens_header(path: Path) -> SensHeader:
    """Parse the header of a ScanNet .sens file (version 4, little-endian).

    Raises:
        DataError: missing or truncated file, another version, or an unsupported codec.
    """
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as err:
        raise DataError(f"{path}: cannot open ({err.strerror or err})") from None
    with fh:
        (version,) = struct.unpack("<I", _read_exact(fh, 4, path))
        if version != SENS_VERSION:
            raise DataError(f"{path}: .sens version {version}, expected {SENS_VERSION}")
        (name_len,) = struct.unpack("<Q", _read_exact(fh, 8, path))
        if name_len > 4096:
            raise DataError(f"{path}: not a .sens file (sensor name of {name_len} bytes)")
        _read_exact(fh, name_len, path)
        mats = np.frombuffer(_read_exact(fh, 4 * 16 * 4, path), dtype="<f4").reshape(4, 4, 4)
        colour_type, depth_type, cw, ch, dw, dh, shift, count = struct.unpack(
            "<2i4IfQ", _read_exact(fh, 4 * 2 + 4 * 4 + 4 + 8, path)
        )
        offset = fh.tell()
    if colour_type not in _COLOUR_CODECS or _DEPTH_CODECS.get(depth_type) not in (
        "raw_ushort",
        "zlib_ushort",
    ):
        raise DataError(f"{path}: unsupported .sens compression (colour {colour_type}, depth {depth_type})")
    if min(cw, ch, dw, dh) == 0 or not shift > 0:
        raise DataError(f"{path}: .sens header has an empty image size or a depth shift of {shift}")
    return SensHeader(
        intrinsic_color=mats[0].astype(np.float64),
        intrinsic_depth=mats[2].astype(np.float64),
        color_codec=_COLOUR_CODECS[colour_type],
        depth_codec=_DEPTH_CODECS[depth_type],
        color_hw=(ch, cw),
        depth_hw=(dh, dw),
        depth_shift=float(shift),
        num_frames=int(count),
        frames_offset=offset,
    )


def sens_frame_offsets(path: Path, header: SensHeader) -> list[int]:
    """Byte offset of every frame (walks the frame headers, skipping the image data).

    Raises:
        DataError: the file ends before its last frame.
    """
    offsets = []
    size = path.stat().st_size
    with open(path, "rb") as fh:
        offset = header.frames_offset
        for _ in range(header.num_frames):
            fh.seek(offset)
            fields = _FRAME_HEADER.unpack(_read_exact(fh, _FRAME_HEADER.size, path))
            offsets.append(offset)
            offset += _FRAME_HEADER.size + fields[18] + fields[19]
            if offset > size:
                raise DataError(f"{path}: truncated .sens file (frame {len(offsets) - 1} ends past the end)")
    return offsets


def read_sens_frame(
    path: Path, header: SensHeader, offset: int
) -> tuple[NDArray[np.uint8], NDArray[np.uint16]]:
    """Decode the frame at `offset`.

    Returns:
        colour (Hc, Wc, 3) uint8 RGB and depth (Hd, Wd) uint16 in 1/depth_shift metres (0 = missing).

    Raises:
        DataError: truncated data or images that do not decode to the header's sizes.
    """
    with open(path, "rb") as fh:
        fh.seek(offset)
        fields = _FRAME_HEADER.unpack(_read_exact(fh, _FRAME_HEADER.size, path))
        colour_bytes = _read_exact(fh, fields[18], path)
        depth_bytes = _read_exact(fh, fields[19], path)
    (ch, cw), (dh, dw) = header.color_hw, header.depth_hw
    if header.color_codec == "raw":
        colour = np.frombuffer(colour_bytes, np.uint8)
        colour = colour.reshape(ch, cw, 3) if colour.size == ch * cw * 3 else None
    else:
        bgr = cv2.imdecode(np.frombuffer(colour_bytes, np.uint8), cv2.IMREAD_COLOR)
        colour = None if bgr is None else bgr[:, :, ::-1]
    if colour is None or colour.shape != (ch, cw, 3):
        raise DataError(f"{path}: frame at byte {offset}: colour image does not decode to {cw}x{ch}")
    try:
        raw = zlib.decompress(depth_bytes) if header.depth_codec == "zlib_ushort" else depth_bytes
    except zlib.error as err:
        raise DataError(f"{path}: frame at byte {offset}: corrupt depth ({err})") from None
    if len(raw) != dh * dw * 2:
        raise DataError(f"{path}: frame at byte {offset}: depth holds {len(raw)} bytes, expected {dw}x{dh}x2")
    depth = np.frombuffer(raw, dtype="<u2").reshape(dh, dw).astype(np.uint16)
    return np.ascontiguousarray(colour), depth


def intrinsics_from_4x4(matrix: NDArray[np.floating], source: str) -> Intrinsics:
    """Pinhole intrinsics from a ScanNet 4x4 camera matrix [fx 0 cx 0; 0 fy cy 0; 0 0 1 0; 0 0 0 1].

    ScanNet's calibration gives OpenCV-style (0-based) principal points; they are used as they are.

    Raises:
        DataError: not of that form.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4) or not np.allclose(m[2:], [[0, 0, 1, 0], [0, 0, 0, 1]]) or m[0, 1] or m[1, 0]:
        raise DataError(f"{source}: not a 4x4 pinhole intrinsics matrix")
    try:
        return Intrinsics(float(m[0, 0]), float(m[1, 1]), float(m[0, 2]), float(m[1, 2]))
    except ValueError as err:
        raise DataError(f"{source}: {err}") from None


def read_label_table(path: Path) -> NDArray[np.uint8]:
    """scannetv2-labels.combined.tsv as a look-up table: raw ScanNet id -> benchmark id (0 = void).

    Raw ids whose `nyu40id` is not one of `BENCHMARK_NYU40_IDS` (and ids absent from the file) map to 0.

    Raises:
        DataError: missing file, missing `id`/`nyu40id` columns, or non-integer entries.
    """
    benchmark = {nyu40: i for i, nyu40 in enumerate(BENCHMARK_NYU40_IDS, 1)}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    if not rows or not {"id", "nyu40id"} <= set(rows[0]):
        raise DataError(f"{path}: needs the tab-separated columns `id` and `nyu40id`")
    pairs = {}
    for number, row in enumerate(rows, 2):
        try:
            raw_id, nyu40 = int(row["id"]), int(row["nyu40id"])
        except (TypeError, ValueError):
            raise DataError(f"{path}:{number}: `id` and `nyu40id` must be integers") from None
        if not 0 <= raw_id <= 65535:
            raise DataError(f"{path}:{number}: `id` {raw_id} outside 0..65535")
        pairs[raw_id] = benchmark.get(nyu40, 0)
    table = np.zeros(65536, np.uint8)  # label-filt PNGs are 16-bit
    for raw_id, class_id in pairs.items():
        table[raw_id] = class_id
    return table


def read_scene_list(path: Path) -> list[str]:
    """One scene name per line ("scene0000_00"); blank lines skipped.

    Raises:
        DataError: missing file or a line that is not a scene name.
    """
    try:
        lines = path.read_text(encoding="utf-8").split()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    for line in lines:
        if not (line.startswith("scene") and line[5:].replace("_", "").isdigit()):
            raise DataError(f"{path}: {line!r} is not a ScanNet scene name")
    return lines


def _label_zip(root: Path, scene: str) -> Path:
    return root / SCANS_DIR / scene / f"{scene}{LABEL_ZIP_SUFFIX}"


def labelled_frames(zip_path: Path) -> set[int]:
    """Frame indices with a `label-filt/<index>.png` in a scene's label zip."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile) as err:
        raise DataError(f"{zip_path}: not a readable zip ({err})") from None
    frames = set()
    for name in names:
        folder, _, file = name.rpartition("/")
        stem = file.removesuffix(".png")
        if folder.endswith(LABEL_MEMBER_DIR) and file.endswith(".png") and stem.isdigit():
            frames.add(int(stem))
    return frames


def read_label_png(zip_path: Path, index: int) -> NDArray[np.uint16]:
    """`label-filt/<index>.png` of a label zip as (H, W) uint16 raw ids."""
    member = f"{LABEL_MEMBER_DIR}/{index}.png"
    try:
        with zipfile.ZipFile(zip_path) as archive:
            data = archive.read(member)
    except KeyError:
        raise DataError(f"{zip_path}: no {member}") from None
    except (OSError, zipfile.BadZipFile) as err:
        raise DataError(f"{zip_path}: not a readable zip ({err})") from None
    label = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if label is None or label.ndim != 2 or label.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{zip_path}: {member} is not a one-channel 8/16-bit label PNG")
    return label.astype(np.uint16)


@dataclass(frozen=True)
class ScanNetReader:
    """`DatasetReader` of ScanNet v2: train and val scenes, every `frame_step`-th labelled frame.

    Attributes:
        frame_step: Keep frames whose index is a multiple of it (100: the 2D benchmark's 25k set).
    """

    name: str = "scannet"
    class_choices: tuple[int, ...] = (20,)
    frame_step: int = DEFAULT_FRAME_STEP

    def __post_init__(self) -> None:
        if self.frame_step < 1:
            raise ValueError(f"frame_step must be >= 1, got {self.frame_step}")

    def label_space(self, num_classes: int) -> DatasetInfo:
        """`data.catalog.SCANNET` (void + the 20 benchmark classes)."""
        return SCANNET

    def depth_unit(self) -> str | None:
        """Millimetres, as the .sens files store it (depth_shift 1000)."""
        return "mm"

    def check_layout(self, root: Path) -> None:
        """The label table, both scene lists, and each listed scene's .sens and label zip."""
        for name in (LABEL_TSV, *SPLIT_LISTS.values()):
            if not (root / name).is_file():
                raise DataError(f"{root / name}: file not found")
        for list_name in SPLIT_LISTS.values():
            for scene in read_scene_list(root / list_name):
                for path in (root / SCANS_DIR / scene / f"{scene}.sens", _label_zip(root, scene)):
                    if not path.is_file():
                        raise DataError(f"{path}: file not found (scene listed in {list_name})")

    def list_frames(self, root: Path, num_classes: int) -> list[FrameRef]:
        """Train then val scenes in list order; in each, labelled frames at multiples of frame_step."""
        read_label_table(root / LABEL_TSV)  # fail early on a bad table
        refs = []
        for split, list_name in SPLIT_LISTS.items():
            for scene in read_scene_list(root / list_name):
                sens = root / SCANS_DIR / scene / f"{scene}.sens"
                offsets = sens_frame_offsets(sens, read_sens_header(sens))
                labelled = labelled_frames(_label_zip(root, scene))
                for index in range(0, len(offsets), self.frame_step):
                    if index in labelled:
                        source = (scene, index, offsets[index])
                        refs.append(FrameRef(frame_id=f"{scene}_{index:06d}", split=split, source=source))
        return refs

    def read_frame(self, root: Path, ref: FrameRef, num_classes: int) -> RawFrame:
        """Colour, depth and label at the depth size, with the depth camera's intrinsics."""
        scene, index, offset = str(ref.source[0]), int(ref.source[1]), int(ref.source[2])
        sens = root / SCANS_DIR / scene / f"{scene}.sens"
        header = read_sens_header(sens)
        colour, depth = read_sens_frame(sens, header, offset)
        raw_label = read_label_png(_label_zip(root, scene), index)
        label = read_label_table(root / LABEL_TSV)[raw_label]
        dh, dw = header.depth_hw
        rgb = cv2.resize(colour, (dw, dh), interpolation=cv2.INTER_AREA)  # (Hd, Wd, 3)
        label = cv2.resize(label, (dw, dh), interpolation=cv2.INTER_NEAREST)  # (Hd, Wd)
        depth_m = (depth.astype(np.float32) / np.float32(header.depth_shift)).astype(np.float32)
        intrinsics = intrinsics_from_4x4(header.intrinsic_depth, f"{sens}: intrinsic_depth")
        return RawFrame(ref.frame_id, rgb=rgb, label=label, depth_m=depth_m, intrinsics=intrinsics)
