"""Readers for real sensor formats: units are explicit and the documented ranges come out in metres."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from fusionseg.data.io import (
    DEPTH_UNITS,
    ImageHeader,
    parse_depth_scale,
    read_depth,
    read_gray,
    read_image,
    read_image_header,
    read_label,
    write_depth,
    write_png,
)
from fusionseg.errors import DataError


def _valid_range(depth: np.ndarray) -> tuple[float, float]:
    valid = depth[depth > 0]
    return float(valid.min()), float(valid.max())


def test_kitti_sparse_depth_in_metres(shared_data) -> None:
    for frame in ("000000", "000001", "000002"):
        path = shared_data / "kitti-object-lidar3" / "sparse_depth" / f"{frame}.png"
        depth = read_depth(path, depth_scale_m="kitti")
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert depth.dtype == np.float32
        np.testing.assert_array_equal(depth, raw.astype(np.float32) / np.float32(256.0))
        lo, hi = _valid_range(depth)
        # README: points kept at w > 0.1 m; an HDL-64 sees up to ~120 m
        assert 0.1 < lo < 10.0 and 30.0 < hi < 130.0
        density = float((depth > 0).mean())
        assert 0.0395 <= density <= 0.0455  # README: 4.0-4.5 % of pixels valid (rounded)


def test_nyu_depth_in_metres(shared_data) -> None:
    for frame in ("nyu0001", "nyu0002", "nyu0003", "nyu0004"):
        folder = shared_data / "nyuv2-hha-ref" / "full480x640" / frame
        filled = read_depth(folder / "depth_filled_1e-4m.png", depth_scale_m="1e-4m")
        raw = read_depth(folder / "depth_raw_1e-4m.png", depth_scale_m=1e-4)
        assert filled.shape == raw.shape == (480, 640)
        lo, hi = _valid_range(filled)
        assert 0.3 < lo and hi < 10.5  # Kinect v1 indoor range
        assert (filled > 0).all()  # toolbox-filled depth has no holes
        zeros = float((raw == 0).mean())
        assert 0.20 < zeros < 0.30  # README: 24-26 % zeros incl. the invalid border


def test_kinect_v2_units(shared_data) -> None:
    esa = read_depth(shared_data / "kinectv2-samples" / "esanet" / "sample_depth.png", depth_scale_m="0.1mm")
    assert esa.shape == (424, 512)
    lo, hi = _valid_range(esa)
    assert hi <= 6.5536 and lo > 0.0  # 0.1 mm units saturate at 65535 -> 6.55 m
    assert 0.08 < float((esa == 0).mean()) < 0.14  # README: 11 % zeros
    ems = read_depth(shared_data / "kinectv2-samples" / "emsanet" / "sample_depth.png", depth_scale_m="mm")
    assert ems.shape == (1080, 1440)
    assert 0.03 < float((ems == 0).mean()) < 0.07  # README: 5 % zeros
    assert 0.3 < float(np.median(ems[ems > 0])) < 8.0


def test_wrong_unit_is_refused_not_guessed(shared_data) -> None:
    path = shared_data / "nyuv2-hha-ref" / "full480x640" / "nyu0001" / "depth_filled_1e-4m.png"
    with pytest.raises(DataError, match="too large"):
        read_depth(path, depth_scale_m="m")  # 1e-4 m units declared as metres -> km-scale medians


def test_metres_stored_as_integers_declared_as_mm(tmp_path) -> None:
    path = tmp_path / "metres.png"
    cv2.imwrite(str(path), np.full((8, 8), 3, np.uint16))  # "3 m" written as integers
    with pytest.raises(DataError, match=r"metres.png.*too small"):
        read_depth(path, depth_scale_m="mm")


def test_depth_errors_name_the_file(tmp_path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.png: file is empty"):
        read_depth(empty, depth_scale_m="mm")
    eight = tmp_path / "eight.png"
    cv2.imwrite(str(eight), np.full((4, 4), 9, np.uint8))
    with pytest.raises(DataError, match="eight.png: depth is 8-bit"):
        read_depth(eight, depth_scale_m="mm")
    zeros = tmp_path / "zeros.png"
    cv2.imwrite(str(zeros), np.zeros((4, 4), np.uint16))
    with pytest.raises(DataError, match="zeros.png: depth has no valid pixels"):
        read_depth(zeros, depth_scale_m="mm")
    corrupt = tmp_path / "corrupt.png"
    good = cv2.imencode(".png", np.full((16, 16), 1000, np.uint16))[1].tobytes()
    corrupt.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="corrupt.png"):
        read_depth(corrupt, depth_scale_m="mm")
    with pytest.raises(DataError, match="missing.png: cannot read"):
        read_depth(tmp_path / "missing.png", depth_scale_m="mm")


def test_huge_png_header_is_refused_before_decoding(tmp_path) -> None:
    data = bytearray(cv2.imencode(".png", np.zeros((2, 2), np.uint8))[1].tobytes())
    data[16:20] = (200_000).to_bytes(4, "big")
    data[20:24] = (200_000).to_bytes(4, "big")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bytes(data))
    with pytest.raises(DataError, match="bomb.png: image dimensions exceed"):
        read_image(bomb)


def test_depth_scale_names_and_numbers() -> None:
    assert parse_depth_scale("mm") == 1e-3
    assert parse_depth_scale("KITTI") == 1 / 256
    assert parse_depth_scale("0.0002") == 2e-4
    assert parse_depth_scale(0.5) == 0.5
    assert set(DEPTH_UNITS) >= {"m", "mm", "0.1mm", "1e-4m", "kitti"}
    for bad in ("furlong", "-1", "0", "nan"):
        with pytest.raises(DataError):
            parse_depth_scale(bad)


def test_depth_round_trip(tmp_path) -> None:
    depth = np.array([[0.0, 1.2344], [65.535, 70.0]], np.float32)
    path = write_depth(tmp_path / "d.png", depth, depth_scale_m=1e-3)
    back = read_depth(path, depth_scale_m="mm", check_range=False)
    np.testing.assert_allclose(back, [[0.0, 1.234], [65.535, 65.535]], atol=1e-6)  # saturates at 65535


def test_image_readers(tmp_path, shared_data) -> None:
    bgr = read_image(shared_data / "nyuv2-hha-ref" / "full480x640" / "nyu0001" / "rgb.png")
    rgb = read_image(shared_data / "nyuv2-hha-ref" / "full480x640" / "nyu0001" / "rgb.png", order="rgb")
    assert bgr.shape == (480, 640, 3) and bgr.dtype == np.uint8
    np.testing.assert_array_equal(bgr[..., ::-1], rgb)
    grey = tmp_path / "g.png"
    write_png(grey, np.arange(16, dtype=np.uint8).reshape(4, 4))
    assert read_image(grey).shape == (4, 4, 3)
    assert read_gray(grey).shape == (4, 4)
    label = read_label(shared_data / "nyuv2-hha-ref" / "full480x640" / "nyu0001" / "label13.png")
    assert label.shape == (480, 640) and int(label.max()) <= 13
    with pytest.raises(DataError, match="label maps must be single-channel"):
        read_label(shared_data / "nyuv2-hha-ref" / "full480x640" / "nyu0001" / "rgb.png")
    sixteen = tmp_path / "sixteen.png"
    write_png(sixteen, np.zeros((4, 4), np.uint16))
    with pytest.raises(DataError, match="expected an 8-bit image"):
        read_image(sixteen)


def test_image_header_gives_size_channels_and_stored_bit_depth(tmp_path) -> None:
    files = {
        "grey16.png": np.zeros((4, 5), np.uint16),
        "colour16.png": np.zeros((4, 5, 3), np.uint16),
        "colour8.png": np.zeros((4, 5, 3), np.uint8),
        "bgra8.png": np.zeros((4, 5, 4), np.uint8),
        "colour8.jpg": np.zeros((4, 5, 3), np.uint8),
    }
    for name, image in files.items():
        assert cv2.imwrite(str(tmp_path / name), image)
    headers = {name: read_image_header(tmp_path / name) for name in files}
    assert headers["grey16.png"] == ImageHeader("PNG", 4, 5, 1, 16)
    assert headers["colour16.png"] == ImageHeader("PNG", 4, 5, 3, 16)
    assert headers["colour8.png"] == ImageHeader("PNG", 4, 5, 3, 8)
    assert headers["bgra8.png"] == ImageHeader("PNG", 4, 5, 4, 8)
    assert headers["colour8.jpg"] == ImageHeader("JPEG", 4, 5, 3, 8)


@pytest.mark.parametrize("side_px", [10_500, 60_000])  # above our limit; below / above Pillow's error
def test_image_header_refuses_a_bomb_with_our_error_and_no_pillow_warning(tmp_path, side_px: int) -> None:
    import zlib

    data = bytearray(cv2.imencode(".png", np.zeros((1, 1), np.uint8))[1].tobytes())
    data[16:24] = side_px.to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # a valid header
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a leaked DecompressionBombWarning would fail here
        with pytest.raises(DataError, match="bomb.png: image dimensions exceed"):
            read_image_header(bomb)
        with pytest.raises(DataError, match="bomb.png: image dimensions exceed"):
            read_image(bomb)


def test_image_header_of_unknown_files(tmp_path) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(bytes(range(256)))
    assert read_image_header(junk, unknown_ok=True) is None
    with pytest.raises(DataError, match="junk.png: not a readable image"):
        read_image_header(junk)
    with pytest.raises(DataError, match="missing.png: cannot read"):
        read_image_header(tmp_path / "missing.png", unknown_ok=True)
