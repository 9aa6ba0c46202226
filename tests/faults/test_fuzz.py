"""Hypothesis fuzzing of everything that reads outside input: image decoders, the list-file parser and
writer, the config loader, every modality preprocessor and the prepare-depth job on damaged files.

Contract everywhere: a result of the documented shape, dtype and range, with the inputs unchanged, or
the library's own error (`ValueError` for bad arrays, `DataError`/`ConfigError` naming the file or key)
- never another exception, a crash or a hang. The example counts below are the "inputs tried" figures
of docs/reliability.md.
"""

from __future__ import annotations

import json
import math
import os
import string
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from fusionseg.config import RunConfig, config_to_dict, dump_config, load_config
from fusionseg.data.io import read_depth, read_gray, read_image, read_label, write_png
from fusionseg.data.listfile import read_list, write_list
from fusionseg.data.prepare import PrepareOptions, prepare_depth
from fusionseg.errors import ConfigError, DataError
from fusionseg.modalities import (
    Intrinsics,
    compute_evi,
    compute_ndvi,
    compute_normals,
    depth_to_jet,
    disparity_to_depth,
    encode_evi,
    encode_ndvi,
    fill_in_fast,
    fill_in_multiscale,
    hha,
    hha_to_bgr,
    normals_to_uint8,
    nrg_false_colour,
)
from fusionseg.modalities.completion import depth_to_metres
from fusionseg.modalities.evi import index_to_uint8
from fusionseg.modalities.hha_torch import hha_torch

pytestmark = pytest.mark.faults

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# ---------------------------------------------------------------------------------------------------
# Image decoders on damaged files
# ---------------------------------------------------------------------------------------------------

_RNG = np.random.default_rng(0)
_BASES = {
    "gray8": cv2.imencode(".png", _RNG.integers(0, 256, (8, 8), dtype=np.uint8))[1].tobytes(),
    "bgr8": cv2.imencode(".png", _RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8))[1].tobytes(),
    "bgra8": cv2.imencode(".png", _RNG.integers(0, 256, (8, 8, 4), dtype=np.uint8))[1].tobytes(),
    "depth16": cv2.imencode(".png", _RNG.integers(500, 5000, (8, 8), dtype=np.uint16))[1].tobytes(),
    "jpeg": cv2.imencode(".jpg", _RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8))[1].tobytes(),
}
# header sizes (width, height): small ones the decoder may try, and ones above the 100-Mpx limit that
# must be refused before any allocation (nothing in between: that would allocate hundreds of MB)
_SIZES = [(0, 8), (8, 0), (1, 1), (7, 9), (9, 7), (1024, 1024), (10_000, 10_001), (65_535, 65_535)]
_SIZES += [(2**31 - 1, 1), (1, 2**31 - 1), (2**32 - 1, 2**32 - 1)]


def _with_size(data: bytes, width: int, height: int) -> bytes:
    """Another size in the PNG header, with the header's CRC fixed so that only the size is wrong."""
    out = bytearray(data)
    out[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    out[29:33] = zlib.crc32(bytes(out[12:29])).to_bytes(4, "big")
    return bytes(out)


damaged_files = st.one_of(
    st.tuples(  # bytes overwritten (PNGs only: a JPEG's unchecked size fields could ask for 300 MB)
        st.sampled_from([k for k in sorted(_BASES) if k != "jpeg"]),
        st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=8),
    ).map(lambda t: bytes(_flip(_BASES[t[0]], t[1]))),
    st.tuples(st.sampled_from(sorted(_BASES)), st.integers(0, 400)).map(lambda t: _BASES[t[0]][: t[1]]),
    st.tuples(st.sampled_from(["gray8", "bgr8", "depth16"]), st.sampled_from(_SIZES)).map(
        lambda t: _with_size(_BASES[t[0]], *t[1])
    ),
    st.binary(max_size=300).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
    st.binary(max_size=300),
)


def _flip(data: bytes, edits: list[tuple[int, int]]) -> bytearray:
    out = bytearray(data)
    for pos, value in edits:
        out[pos % len(out)] = value
    return out


READERS = {
    "read_image": (read_image, lambda a: a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3),
    "read_gray": (read_gray, lambda a: a.dtype == np.uint8 and a.ndim == 2),
    "read_label": (read_label, lambda a: a.dtype in (np.uint8, np.uint16) and a.ndim == 2),
    "read_depth": (
        lambda p: read_depth(p, depth_scale_m="mm"),
        lambda a: a.dtype == np.float32 and a.ndim == 2 and bool(np.isfinite(a).all() and (a >= 0).all()),
    ),
}


@FUZZ
@given(data=damaged_files)
def test_fuzz_image_readers_on_damaged_files(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "frame.png"
    path.write_bytes(data)
    for name, (reader, valid) in READERS.items():
        try:
            image = reader(path)
        except DataError as exc:
            assert str(path) in str(exc), name  # the message names the file
            continue
        assert isinstance(image, np.ndarray) and valid(image), f"{name}: {image.dtype} {image.shape}"
        assert image.size <= 100_000_000


# ---------------------------------------------------------------------------------------------------
# List files
# ---------------------------------------------------------------------------------------------------

_SEGMENTS = ["..", ".", "a", "b.png", "", "...", "c", "~", "%2e%2e"]
path_tokens = st.tuples(st.booleans(), st.lists(st.sampled_from(_SEGMENTS), min_size=1, max_size=6)).map(
    lambda t: ("/" if t[0] else "") + "/".join(t[1])
)


@FUZZ
@given(rows=st.lists(st.tuples(path_tokens, path_tokens), min_size=1, max_size=4), absolute=st.booleans())
def test_fuzz_list_paths_never_leave_the_root(tmp_path: Path, rows: list, absolute: bool) -> None:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    lst = root / "list.txt"
    lst.write_text("# columns: x y\n" + "\n".join(f"{a} {b}" for a, b in rows) + "\n")
    try:
        listing = read_list(lst, allow_absolute=absolute, check_files=False)
    except DataError as exc:
        assert str(lst) in str(exc)
        return
    for sample in listing.samples:
        for file in sample.files.values():
            inside = os.path.commonpath([str(root), os.path.normpath(file)]) == str(root)
            assert inside or absolute, f"{file} escapes {root}"


_NAME = st.text(alphabet=string.ascii_letters + string.digits + "._-#~", min_size=1, max_size=12).filter(
    lambda n: n not in (".", "..")
)


@FUZZ
@given(rows=st.lists(st.tuples(st.lists(_NAME, min_size=1, max_size=3), _NAME), min_size=1, max_size=5))
def test_fuzz_list_write_read_round_trip(tmp_path: Path, rows: list) -> None:
    root = tmp_path / "rt"
    files = [{"image": root.joinpath(*folders), "label": root / "labels" / name} for folders, name in rows]
    path = write_list(root / "list.txt", ("image", "label"), files)
    listing = read_list(path, check_files=False)
    assert [dict(s.files) for s in listing.samples] == files
    assert len({s.id for s in listing.samples}) == len(files)


# ---------------------------------------------------------------------------------------------------
# Config loader
# ---------------------------------------------------------------------------------------------------

# every (section, key) of the schema
_SCHEMA = [(section, key) for section, fields in config_to_dict(RunConfig()).items() for key in fields]
yaml_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**40), 2**40),
        st.floats(allow_nan=False),
        st.text(max_size=12),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@FUZZ
@given(entries=st.lists(st.tuples(st.sampled_from(_SCHEMA), yaml_values), min_size=1, max_size=4))
def test_fuzz_config_files_of_real_keys(tmp_path: Path, entries: list) -> None:
    values: dict = {}
    for (section, key), value in entries:
        values.setdefault(section, {})[key] = value
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(values))
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        assert len(str(exc)) < 2000
        return
    assert load_config(dump_config(cfg, tmp_path / "resolved.yaml")) == cfg  # saved runs reload


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.text(alphabet="{}[]:,-&*!|>'\"#%@ \n\tab1.", max_size=120)))
def test_fuzz_config_text_and_overrides(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    for call in (
        lambda: load_config(path),
        lambda: load_config(None, [text]),
        lambda: load_config(None, [f"train.lr={text}"]),
    ):
        try:
            assert isinstance(call(), RunConfig)
        except ConfigError:
            pass


# ---------------------------------------------------------------------------------------------------
# Modality preprocessors
# ---------------------------------------------------------------------------------------------------

_DTYPES = [np.float32, np.float64, np.float16, np.uint8, np.uint16, np.int32, np.bool_]
wild_arrays = st.sampled_from(_DTYPES).flatmap(
    lambda dt: arrays(dt, array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=10))
)


def _depth_like(dtype=np.float32, max_m: float = 20.0):
    """Plausible depth maps: (H, W), >= 0, many zeros (missing)."""
    return array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12).flatmap(
        lambda shape: arrays(
            dtype, shape, elements=st.one_of(st.just(0.0), st.floats(0.0625, max_m, width=32)).map(dtype)
        )
    )


def _unit_band(shape):
    return arrays(np.float64, shape, elements=st.floats(0.0, 1.0))


intrinsics = st.one_of(
    st.builds(
        Intrinsics, st.floats(1.0, 500.0), st.floats(1.0, 500.0), st.floats(-5.0, 15.0), st.floats(-5.0, 15.0)
    ),
    st.just(Intrinsics(10.0, 10.0, 5.0, 5.0)),
)


class Case(NamedTuple):
    """One fuzzed call: `call()` runs it, `inputs` must be unchanged after it, `valid(out)` checks its
    result against the documented contract."""

    call: Callable[[], Any]
    inputs: list[np.ndarray]
    valid: Callable[[np.ndarray], bool]


def _finite(a: np.ndarray) -> bool:
    return bool(np.isfinite(a).all())


def _is(a: np.ndarray, shape: tuple[int, ...], dtype: Any) -> bool:
    return a.shape == shape and a.dtype == dtype


def _depth(draw) -> np.ndarray:
    return draw(st.one_of(_depth_like(), wild_arrays))


def _completion(fill):
    def case(draw) -> Case:
        d = _depth(draw)
        kw = {"max_depth": draw(st.floats(1.0, 120.0)), "extrapolate": draw(st.booleans())}
        kw["blur_type"] = draw(st.sampled_from(["bilateral", "gaussian"]))
        # values <= 0.1 m mean "still missing" and may be negative (ip_basic's inversion, documented)
        return Case(lambda: fill(d, **kw), [d], lambda o: _is(o, d.shape, np.float32) and _finite(o))

    return case


def _jet(draw) -> Case:
    d = _depth(draw)
    kw = {"max_depth_m": draw(st.floats(0.5, 100.0)), "inverted": draw(st.booleans())}
    kw["missing"] = draw(st.sampled_from(["black", "jet0"]))
    return Case(lambda: depth_to_jet(d, **kw), [d], lambda o: _is(o, (*d.shape, 3), np.uint8))


def _hha(draw) -> Case:
    d, intr = _depth(draw), draw(intrinsics)
    return Case(lambda: hha(d, intr), [d], lambda o: _is(o, (*d.shape, 3), np.uint8))


def _hha_torch(draw) -> Case:
    d, intr = _depth(draw), draw(intrinsics)
    batch = torch.from_numpy(np.ascontiguousarray(d))
    batch = batch[None] if batch.ndim == 2 else batch  # (1, H, W); other ranks as drawn
    ok = lambda o: _is(o, (*batch.shape, 3), np.uint8) or _is(o, (1, *batch.shape, 3), np.uint8)  # noqa: E731
    return Case(lambda: hha_torch(batch, intr, device="cpu").numpy(), [d], ok)


def _normals(draw) -> Case:
    d, intr, radius = _depth(draw), draw(intrinsics), draw(st.integers(1, 4))

    def ok(o: np.ndarray) -> bool:
        # NaN marks an undefined normal (too few or degenerate window pixels, documented); a pixel
        # without NaN is a finite unit vector
        defined = o[~np.isnan(o).any(axis=-1)]
        unit = np.linalg.norm(defined, axis=-1)
        return _is(o, (*d.shape, 3), np.float32) and _finite(defined) and np.allclose(unit, 1, atol=1e-3)

    return Case(lambda: compute_normals(d, intr, radius_px=radius), [d], ok)


def _normals_to_uint8(draw) -> Case:
    unit_normals = _depth_like().flatmap(
        lambda d: arrays(np.float32, (*d.shape, 3), elements=st.floats(-1, 1, width=32))
    )
    n = draw(st.one_of(unit_normals, wild_arrays))
    return Case(lambda: normals_to_uint8(n), [n], lambda o: _is(o, n.shape, np.uint8))


def _disparity(draw) -> Case:
    u = draw(st.one_of(arrays(np.uint16, (draw(st.integers(1, 8)), draw(st.integers(1, 8)))), wild_arrays))
    kw = {"baseline_m": draw(st.floats(0.01, 1.0)), "fx_px": draw(st.floats(1.0, 3000.0))}
    ok = lambda o: _is(o, u.shape, np.float32) and _finite(o) and (o >= 0).all()  # noqa: E731
    return Case(lambda: disparity_to_depth(u, **kw), [u], ok)


def _to_metres(draw) -> Case:
    d, scale = _depth(draw), draw(st.sampled_from([1e-3, 1e-4, 1 / 256, 1.0]))
    ok = lambda o: _is(o, d.shape, np.float32) and _finite(o) and (o >= 0).all()  # noqa: E731
    return Case(lambda: depth_to_metres(d, depth_scale_m=scale), [d], ok)


def _index(fn, bands: int):
    def case(draw) -> Case:
        shape = (draw(st.integers(1, 8)), draw(st.integers(1, 8)))
        arrays_ = [draw(st.one_of(_unit_band(shape), wild_arrays)) for _ in range(bands)]
        ok = lambda o: _is(o, arrays_[0].shape, np.float64) and _finite(o) and (np.abs(o) <= 1).all()  # noqa: E731
        return Case(lambda: fn(*arrays_), arrays_, ok)

    return case


def _index_to_uint8(draw) -> Case:
    index = draw(st.one_of(arrays(np.float64, (3, 4), elements=st.floats(-3, 3)), wild_arrays))
    return Case(lambda: index_to_uint8(index), [index], lambda o: _is(o, index.shape, np.uint8))


def _nir_bgr(fn, **kw):
    def case(draw) -> Case:
        shape = (draw(st.integers(1, 8)), draw(st.integers(1, 8)))
        nir = draw(st.one_of(arrays(np.uint8, shape), wild_arrays))
        bgr = draw(st.one_of(arrays(np.uint8, (*shape, 3)), wild_arrays))
        extra = {k: draw(v) for k, v in kw.items()}
        return Case(lambda: fn(nir, bgr, **extra), [nir, bgr], lambda o: _is(o, (*nir.shape, 3), np.uint8))

    return case


def _hha_to_bgr(draw) -> Case:
    image = draw(st.one_of(arrays(np.uint8, (3, 4, 3)), wild_arrays))

    def mirrored(out: np.ndarray) -> bool:  # NaN must stay NaN at its place (array_equal: NaN != NaN)
        return np.array_equal(out[..., ::-1], image, equal_nan=image.dtype.kind == "f")

    return Case(lambda: hha_to_bgr(image), [image], mirrored)


PREPROCESSORS: dict[str, Callable[[Any], Case]] = {
    "fill_in_fast": _completion(fill_in_fast),
    "fill_in_multiscale": _completion(fill_in_multiscale),
    "depth_to_jet": _jet,
    "hha": _hha,
    "hha_torch": _hha_torch,
    "compute_normals": _normals,
    "normals_to_uint8": _normals_to_uint8,
    "disparity_to_depth": _disparity,
    "depth_to_metres": _to_metres,
    "compute_ndvi": _index(compute_ndvi, 2),
    "compute_evi": _index(compute_evi, 3),
    "index_to_uint8": _index_to_uint8,
    "encode_evi": _nir_bgr(encode_evi, colormap=st.booleans()),
    "encode_ndvi": _nir_bgr(encode_ndvi, colormap=st.booleans()),
    "nrg_false_colour": _nir_bgr(nrg_false_colour),
    "hha_to_bgr": _hha_to_bgr,
}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaN from degenerate windows, documented
@pytest.mark.parametrize("name", list(PREPROCESSORS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_fuzz_preprocessors(name: str, data) -> None:
    case = PREPROCESSORS[name](data.draw)
    before = [np.array(a, copy=True) for a in case.inputs]
    try:
        out = case.call()
    except ValueError as exc:  # bad arrays: ValueError naming the argument (STYLE.md section 4)
        assert str(exc), name
        out = None
    for a, b in zip(case.inputs, before):
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f"{name} modified its input"
    if out is not None:
        assert isinstance(out, np.ndarray) and case.valid(out), f"{name}: {out.dtype} {out.shape}"


# ---------------------------------------------------------------------------------------------------
# The prepare-depth job on damaged inputs
# ---------------------------------------------------------------------------------------------------

_FRAME = {
    "depth": _RNG.integers(800, 6000, (12, 16), dtype=np.uint16),
    "rgb": _RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8),
    "nir": _RNG.integers(0, 256, (12, 16), dtype=np.uint8),
}
_OPTIONS = PrepareOptions(complete="fast", hha=True, jet=True, normals=True, evi=True, workers=1)


@settings(max_examples=40, deadline=None)
@given(damage=st.lists(st.tuples(st.sampled_from(sorted(_FRAME)), damaged_files), max_size=2))
def test_fuzz_prepare_job_on_damaged_frames(damage: list) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        for column, image in _FRAME.items():
            write_png(root / column / "f.png", image)
        for column, data in damage:
            (root / column / "f.png").write_bytes(data)
        (root / "list.txt").write_text("# columns: rgb depth nir\nrgb/f.png depth/f.png nir/f.png\n")
        meta = {"intrinsics": {"fx": 20.0, "fy": 20.0, "cx": 7.5, "cy": 5.5}, "depth_scale_m": 0.001}
        (root / "meta.json").write_text(json.dumps(meta))
        out = Path(tmp) / "out"
        summary = prepare_depth(root, out, _OPTIONS)  # never raises for a bad frame
        assert summary.total == 1 and summary.done + summary.failed == 1
        written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
        if summary.failed:
            message = summary.failures[0].message
            assert any(str(root / c / "f.png") in message for c in _FRAME), message
            assert written == []  # nothing half-done
            assert read_list_rows(out / "list.txt") == 0
        else:
            assert written == [f"{p}/f.png" for p in sorted(_OPTIONS.products)]
            for rel in written:
                assert cv2.imread(str(out / rel), cv2.IMREAD_UNCHANGED).shape[:2] == (12, 16)


def read_list_rows(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))


def test_fuzz_inputs_are_valid_before_damage(tmp_path: Path) -> None:
    """Guard: undamaged, the fuzzed files and frame are accepted (the properties are not all errors)."""
    for name, data in _BASES.items():
        (tmp_path / name).write_bytes(data)
    assert math.isfinite(float(read_depth(tmp_path / "depth16", depth_scale_m="mm").max()))
    assert read_image(tmp_path / "bgr8").shape == read_image(tmp_path / "jpeg").shape == (8, 8, 3)
    test_fuzz_prepare_job_on_damaged_frames.hypothesis.inner_test(damage=[])
