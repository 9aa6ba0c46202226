"""Readers and writers for real sensor formats: 8-bit images, 16-bit depth PNGs, label maps.

Depth units are never guessed: every depth read names its scale (metres per stored unit), either as a
number or as one of the names in `DEPTH_UNITS`. `0` means missing everywhere. Values whose range does
not fit the declared unit (metres stored where millimetres are declared, say) are refused with a
`DataError` that names the file.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
from numpy.typing import NDArray

from fusionseg.errors import DataError
from fusionseg.fsutil import atomic_write_bytes

# metres per stored unit, by name
DEPTH_UNITS: dict[str, float] = {
    "m": 1.0,  # float images holding metres
    "mm": 1e-3,  # ScanNet, SUN RGB-D, EMSANet Kinect v2, fusionseg synthetic
    "0.1mm": 1e-4,  # ESANet Kinect v2 samples
    "1e-4m": 1e-4,  # NYU Depth v2 toolbox PNGs
    "kitti": 1.0 / 256.0,  # KITTI depth / LiDAR projections: uint16 / 256 = m
    "1/256": 1.0 / 256.0,  # the same unit by its value: prepare-dataset's Cityscapes depth (<= 256 m)
    "cm": 1e-2,  # SYNTHIA depth PNGs (<= 655 m)
}

# Largest plausible median of valid depth, in metres, for any range sensor we read. Above it the
# declared unit is almost surely too large (mm declared as m, say).
MAX_PLAUSIBLE_MEDIAN_M = 1000.0
# Smallest plausible median of valid depth: below it the unit is almost surely too small
# (metres stored as integers but declared as mm, say).
MIN_PLAUSIBLE_MEDIAN_M = 0.05


@dataclass(frozen=True)
class DepthSensor:
    """What a kind of range sensor measures, to catch depth read in the wrong unit.

    A frame is plausible when the median of its valid depth lies in [min_median_m, max_median_m]
    and its 99th percentile is at most max_p99_m. The bounds leave room around real captures (the
    frames in ../shared/data: Kinect v1/v2 medians 1.7-3.1 m, p99 <= 6 m; KITTI LiDAR medians
    8-13 m, p99 <= 68 m) and around rarer scenes (a long corridor, a close wall), since one refused
    frame stops a training run; units off by 4x (KITTI's 1/256 m read as mm, medians below 15 m),
    10x (0.1 mm read as mm) or 1000x are still refused.

    Attributes:
        name: Key in `DEPTH_SENSORS` (`data.depth_sensor`, `--depth-sensor`).
        min_median_m, max_median_m: Plausible medians of valid depth, metres.
        max_p99_m: Plausible 99th percentile of valid depth, metres.
        description: What it covers.
    """

    name: str
    min_median_m: float
    max_median_m: float
    max_p99_m: float
    description: str

    def problem(self, median_m: float, p99_m: float) -> str | None:
        """Why depth with these statistics does not fit the sensor (None when it does)."""
        if median_m > self.max_median_m:
            return f"median depth {median_m:.4g} m is above {self.max_median_m:g} m"
        if median_m < self.min_median_m:
            return f"median depth {median_m:.4g} m is below {self.min_median_m:g} m"
        if p99_m > self.max_p99_m:
            return f"99th percentile depth {p99_m:.4g} m is above {self.max_p99_m:g} m"
        return None


DEPTH_SENSORS: dict[str, DepthSensor] = {
    s.name: s
    for s in (
        DepthSensor("any", MIN_PLAUSIBLE_MEDIAN_M, MAX_PLAUSIBLE_MEDIAN_M, 5000.0, "any range sensor"),
        DepthSensor("indoor", 0.4, 10.0, 30.0, "Kinect v1/v2, RealSense, indoor ToF and structured light"),
        DepthSensor("outdoor", 4.0, 150.0, 400.0, "automotive LiDAR and stereo"),
    )
}
# Frames with fewer valid pixels than this are not judged (a median of a handful of returns says little).
MIN_PIXELS_FOR_RANGE_CHECK = 64
DEPTH_SENSOR_CHOICES = (*DEPTH_SENSORS, "off")  # "off": no plausibility check (unusual sensors)
# Pixels per image above which decoding is refused (guards against decompression bombs).
MAX_PIXELS = 100_000_000
# Bits per sample of Pillow's image modes (16-bit colour PNGs are told by their raw mode, "RGB;16B").
_MODE_BITS = {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32, "F": 32}


def parse_depth_scale(value: str | float) -> float:
    """Metres per stored unit from a unit name (`DEPTH_UNITS`) or a positive number.

    Raises:
        DataError: unknown name or non-positive number.
    """
    if isinstance(value, str):
        key = value.strip().lower()
        if key in DEPTH_UNITS:
            return DEPTH_UNITS[key]
        try:
            number = float(key)
        except ValueError:
            raise DataError(
                f"unknown depth unit {value!r} (use a number of metres per unit or one of "
                f"{', '.join(DEPTH_UNITS)})"
            ) from None
    else:
        number = float(value)
    if not np.isfinite(number) or number <= 0:
        raise DataError(f"depth scale must be a positive number of metres per unit, got {value!r}")
    return number


def _check_size(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if size == 0:
        raise DataError(f"{path}: file is empty (0 bytes)")


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header declares, read without decoding the pixels.

    Attributes:
        format: Pillow's format name: "PNG", "JPEG", "TIFF", ...
        height_px, width_px: Image size, pixels.
        channels: Samples per pixel as stored (a palette image has 1).
        bit_depth: Bits per sample as stored (8 for ordinary images, 16 for depth PNGs).
    """

    format: str
    height_px: int
    width_px: int
    channels: int
    bit_depth: int


def read_image_header(path: str | Path, *, unknown_ok: bool = False) -> ImageHeader | None:
    """Read an image file's header (size, channels, bit depth) with Pillow, which decodes nothing yet.

    Args:
        path: The image file.
        unknown_ok: Return None for a file Pillow cannot identify (OpenEXR, a corrupt header) instead
            of raising.

    Raises:
        DataError: naming the file: unreadable, a declared size above `MAX_PIXELS` (a decompression
            bomb), or (without `unknown_ok`) not an image Pillow knows.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return _identify(fh, path, unknown_ok=unknown_ok)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _identify(fh: IO[bytes], path: Path, *, unknown_ok: bool) -> ImageHeader | None:
    """`read_image_header` on an open binary file."""
    from PIL import Image

    too_big = DataError(f"{path}: image dimensions exceed the {MAX_PIXELS:,}-pixel limit")
    try:
        with warnings.catch_warnings():  # our own limit below, not Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fh) as image:  # lazy: parses the header only
                width, height = image.size
                header = ImageHeader(
                    image.format or "", height, width, len(image.getbands()), _stored_bits(image)
                )
    except Image.DecompressionBombError:
        raise too_big from None
    except Exception:  # noqa: BLE001 - Pillow raises many types for headers it cannot parse
        declared = _declared_png_size(fh)
        if declared is not None and declared[0] * declared[1] > MAX_PIXELS:
            raise too_big from None
        if unknown_ok:
            return None
        raise DataError(f"{path}: not a readable image (corrupt, truncated or unsupported format)") from None
    if width * height > MAX_PIXELS:
        raise too_big
    return header


def _declared_png_size(fh: IO[bytes]) -> tuple[int, int] | None:
    """(W, H) a PNG's IHDR chunk declares, read by Pillow's chunk parser without the checksum test that
    makes `Image.open` refuse a damaged header (a bomb with a broken CRC is still named a bomb)."""
    from PIL import PngImagePlugin

    try:
        fh.seek(0)
        if not PngImagePlugin._accept(fh.read(8)):  # Pillow's PNG signature test
            return None
        stream = PngImagePlugin.PngStream(fh)
        cid, pos, length = stream.read()
        if cid != b"IHDR":
            return None
        stream.call(cid, pos, length)  # parses the size; the CRC is only checked by `stream.crc`
    except Exception:  # noqa: BLE001 - not a PNG, not even its first chunk, or another Pillow version
        return None
    return stream.im_size


def _stored_bits(image: Any) -> int:
    """Bits per sample as stored: Pillow shows 16-bit colour PNGs as 8-bit modes, their raw mode tells."""
    raw = image.tile[0][3] if image.tile else None  # (codec, extents, offset, args)
    raw = raw[0] if isinstance(raw, tuple) and raw else raw
    if isinstance(raw, str) and ";16" in raw:
        return 16
    return _MODE_BITS.get(image.mode, 8)


def _decode(path: Path, flags: int) -> np.ndarray:
    """Decode an image file; every failure becomes a DataError naming the file."""
    path = Path(path)
    _check_size(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    # a declared size above MAX_PIXELS is refused before decoding; formats Pillow does not know are
    # left to OpenCV's own limit of 2^30 pixels
    _identify(io.BytesIO(data), path, unknown_ok=True)
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        raise DataError(f"{path}: cannot decode image ({exc.err})") from None
    if image is None:
        raise DataError(f"{path}: not a readable image (corrupt, truncated or unsupported format)")
    return image


def read_image(path: str | Path, *, order: str = "bgr") -> NDArray[np.uint8]:
    """Read an 8-bit colour image.

    Args:
        path: Image file (PNG, JPEG, ...). Grey images are expanded to 3 channels.
        order: "bgr" (OpenCV's order, what the original networks were fed) or "rgb".

    Returns:
        (H, W, 3) uint8.

    Raises:
        DataError: unreadable file or not 8 bits per channel.
    """
    path = Path(path)
    image = _decode(path, cv2.IMREAD_UNCHANGED)
    if image.dtype != np.uint8:
        raise DataError(f"{path}: expected an 8-bit image, got {image.dtype} (is this a depth map?)")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if order == "rgb":
        image = np.ascontiguousarray(image[:, :, ::-1])
    elif order != "bgr":
        raise ValueError(f"order must be 'bgr' or 'rgb', got {order!r}")
    return image


def read_unchanged(path: str | Path) -> np.ndarray:
    """Read an image exactly as stored (any bit depth and channel count; colour channels B, G, R first).

    For raw files whose values are not pixels to look at (16-bit disparity or class-id PNGs, raw
    depth), as `cv2.imread(path, cv2.IMREAD_UNCHANGED)` decodes them.

    Raises:
        DataError: missing, unreadable, oversized or corrupt file (one line naming it).
    """
    return _decode(Path(path), cv2.IMREAD_UNCHANGED)


def read_gray(path: str | Path) -> NDArray[np.uint8]:
    """Read an 8-bit single-channel image (e.g. NIR); colour files are converted to grey.

    Returns:
        (H, W) uint8.
    """
    path = Path(path)
    image = _decode(path, cv2.IMREAD_UNCHANGED)
    if image.dtype != np.uint8:
        raise DataError(f"{path}: expected an 8-bit image, got {image.dtype}")
    if image.ndim == 3:
        image = cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2GRAY)
    return image


def read_label(path: str | Path) -> NDArray[np.uint8]:
    """Read a label map of class ids (8- or 16-bit single channel PNG; 0 = void).

    Returns:
        (H, W) uint8 (or uint16 for 16-bit files) class ids.

    Raises:
        DataError: unreadable file or a multi-channel (colour) label image.
    """
    path = Path(path)
    label = _decode(path, cv2.IMREAD_UNCHANGED)
    if label.ndim != 2:
        raise DataError(
            f"{path}: label maps must be single-channel class ids, got {label.shape[2]} channels "
            "(colour-coded ground truth needs converting first)"
        )
    if label.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{path}: label maps must be 8- or 16-bit integers, got {label.dtype}")
    return label


def read_depth(
    path: str | Path,
    *,
    depth_scale_m: float | str,
    check_range: bool = True,
    sensor: str = "any",
    allow_empty: bool = False,
) -> NDArray[np.float32]:
    """Read a depth image and convert it to metres.

    Args:
        path: 16-bit PNG of integer depth units (or a float32 TIFF/EXR of metres with scale 1).
        depth_scale_m: Metres per stored unit, or a unit name from `DEPTH_UNITS`
            ("mm", "0.1mm", "1e-4m", "kitti", "m").
        check_range: Refuse values whose median does not fit a real range sensor in that unit.
        sensor: Which sensor's range to judge by (`DEPTH_SENSORS` key, or "off").
        allow_empty: Accept an all-missing frame (a sensor that returned nothing: valid model input).

    Returns:
        (H, W) float32 depth in metres, 0 = missing.

    Raises:
        DataError: unreadable file, 8-bit or colour image, or values implausible for the unit.
    """
    path = Path(path)
    scale = parse_depth_scale(depth_scale_m)
    raw = _decode(path, cv2.IMREAD_UNCHANGED)
    if raw.ndim != 2:
        raise DataError(f"{path}: depth must be a single-channel image, got {raw.shape[2]} channels")
    if raw.dtype == np.uint8:
        raise DataError(f"{path}: depth is 8-bit; expected 16-bit integer depth (8 bits cannot hold depth)")
    if raw.dtype not in (np.uint16, np.float32):
        raise DataError(f"{path}: unsupported depth dtype {raw.dtype}; expected uint16 or float32")
    depth = raw.astype(np.float32) * np.float32(scale)
    depth[~np.isfinite(depth)] = 0.0
    depth[depth < 0] = 0.0
    if check_range:
        check_depth_range(
            depth, source=str(path), depth_scale_m=scale, sensor=sensor, allow_empty=allow_empty
        )
    return depth


def check_depth_range(
    depth_m: np.ndarray,
    *,
    source: str,
    depth_scale_m: float | None = None,
    sensor: str = "any",
    allow_empty: bool = False,
) -> None:
    """Refuse all-missing depth and depth whose statistics do not fit the sensor (a wrong unit).

    Args:
        depth_m: (H, W) depth in metres, 0 = missing.
        source: Named in the error (the file).
        depth_scale_m: The metres per stored unit the file was read with; the error then names the
            units of `DEPTH_UNITS` that would make the frame plausible.
        sensor: `DEPTH_SENSORS` key, or "off" (no check).
        allow_empty: Accept a frame without valid pixels.

    Raises:
        DataError: naming `source`, what was seen, the declared unit and the units that would fit.
        ValueError: unknown `sensor`.
    """
    if sensor == "off":
        return
    if sensor not in DEPTH_SENSORS:
        raise ValueError(f"sensor must be one of {', '.join(DEPTH_SENSOR_CHOICES)}, got {sensor!r}")
    valid = depth_m[depth_m > 0]
    if valid.size == 0:
        if allow_empty:
            return
        raise DataError(f"{source}: depth has no valid pixels (all zero)")
    if valid.size < MIN_PIXELS_FOR_RANGE_CHECK and allow_empty:
        return
    median, p99 = (float(v) for v in np.percentile(valid, [50, 99]))
    profile = DEPTH_SENSORS[sensor]
    problem = profile.problem(median, p99)
    if problem is None:
        return
    unit = f" with depth scale {depth_scale_m:g} m/unit" if depth_scale_m is not None else ""
    if median < profile.min_median_m:
        hint = "the declared unit is probably too small (e.g. metres declared as millimetres)"
    else:
        hint = "the declared unit is probably too large (e.g. millimetres declared as metres)"
    if depth_scale_m is not None:
        fits = [
            f"{name} (median {median * factor:.3g} m)"
            for name, scale in DEPTH_UNITS.items()
            if scale != depth_scale_m
            and profile.problem(median * (factor := scale / depth_scale_m), p99 * factor) is None
        ]
        if fits:
            hint += f"; units that would fit: {', '.join(fits)}"
    escape = (
        "" if sensor == "any" else f"; set the sensor to 'any' or 'off' if this {sensor} sensor is unusual"
    )
    raise DataError(
        f"{source}: {problem}{unit}, implausible for {profile.description} ({sensor}); {hint}{escape}"
    )


def encode_png(image: np.ndarray, *, source: str = "image") -> bytes:
    """Lossless PNG bytes of a uint8/uint16 image, (H, W) or (H, W, 3) in BGR order."""
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{source}: PNG needs uint8 or uint16, got {image.dtype}")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:  # pragma: no cover - OpenCV failure
        raise DataError(f"{source}: PNG encoding failed")
    return buf.tobytes()


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8/uint16 image as PNG atomically. (H, W, 3) arrays are taken as BGR."""
    return atomic_write_bytes(path, encode_png(image, source=str(path)))


def depth_to_png_units(depth_m: np.ndarray, *, depth_scale_m: float) -> NDArray[np.uint16]:
    """Quantise metres to uint16 units (rounded), 0 stays 0; depths beyond the range saturate."""
    units = np.rint(np.asarray(depth_m, dtype=np.float64) / depth_scale_m)
    units[~np.isfinite(units)] = 0
    return np.clip(units, 0, 65535).astype(np.uint16)


def depth_to_png_units_exact(depth_m: np.ndarray, *, depth_scale_m: float, source: str) -> NDArray[np.uint16]:
    """Quantise metres to uint16 units, refusing depth the unit cannot hold instead of saturating.

    Args:
        depth_m: (H, W) depth in metres, 0 = missing.
        depth_scale_m: Metres per stored unit.
        source: Named in the error (the frame or file).

    Returns:
        (H, W) uint16 units (rounded), 0 = missing.

    Raises:
        DataError: negative or non-finite depth, or depth beyond 65535 units (the unit is too fine:
            millimetres hold 65.5 m, 1e-4 m only 6.55 m).
    """
    depth = np.asarray(depth_m, dtype=np.float64)
    bad = ~np.isfinite(depth) | (depth < 0)
    if bad.any():
        raise DataError(f"{source}: {int(bad.sum())} depth values are negative or not finite")
    units = np.rint(depth / depth_scale_m)
    over = units > 65535
    if over.any():
        raise DataError(
            f"{source}: depth up to {float(depth.max()):.4g} m does not fit 16 bits at {depth_scale_m:g} "
            f"m per unit (at most {65535 * depth_scale_m:.4g} m); {int(over.sum())} pixels would "
            "saturate: use a coarser unit"
        )
    return units.astype(np.uint16)


def write_depth(path: str | Path, depth_m: np.ndarray, *, depth_scale_m: float = 1e-3) -> Path:
    """Write metres as a 16-bit PNG in units of `depth_scale_m` (default millimetres)."""
    return write_png(path, depth_to_png_units(depth_m, depth_scale_m=depth_scale_m))
