"""The TF1 bundle reader against genuine TF-written checkpoints, and its refusals of broken ones."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fusionseg.errors import CheckpointError
from fusionseg.tfimport.bundle import TFCheckpoint, model_tensors, resolve_prefix
from fusionseg.tfimport.crc32c import _raw_short, crc32c

SAMPLE = "tf-checkpoint-sample"
STYLES = ("train_style", "init_style")


@pytest.fixture(scope="module")
def sample(shared_data: Path) -> Path:
    folder = shared_data / SAMPLE
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    return folder


@pytest.fixture(scope="module")
def expected(sample: Path) -> dict:
    return json.loads((sample / "expected.json").read_text(encoding="utf-8"))["checkpoints"]


def refusal(exc: pytest.ExceptionInfo[CheckpointError], *names: object) -> str:
    message = str(exc.value)
    assert "\n" not in message
    for name in names:
        assert str(name) in message, message
    return message


# ---- a minimal table writer, for entries TF would never write ----------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def masked_crc(data: bytes) -> bytes:
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF).to_bytes(4, "little")


def block(entries: list[tuple[bytes, bytes]], compression: int = 0) -> bytes:
    body, restarts = b"", b""
    for key, value in entries:
        restarts += len(body).to_bytes(4, "little")
        body += varint(0) + varint(len(key)) + varint(len(value)) + key + value
    body += (restarts or b"\0\0\0\0") + max(len(entries), 1).to_bytes(4, "little")
    return body + bytes([compression]) + masked_crc(body + bytes([compression]))


def write_table(path: Path, entries: list[tuple[bytes, bytes]], compression: int = 0) -> None:
    data = block(entries, compression)
    meta = block([])
    index = block([(entries[-1][0], varint(0) + varint(len(data) - 5))])
    meta_at, index_at = len(data), len(data) + len(meta)
    handles = varint(meta_at) + varint(len(meta) - 5) + varint(index_at) + varint(len(index) - 5)
    footer = handles.ljust(40, b"\0") + (0xDB4775248B80FB57).to_bytes(8, "little")
    path.write_bytes(data + meta + index + footer)


def entry_proto(dtype: int, dims: list[int], offset: int, size: int) -> bytes:
    shape = b"".join(b"\x12" + varint(len(d)) + d for d in (b"\x08" + varint(n) for n in dims))
    return (
        b"\x08"
        + varint(dtype)
        + b"\x12"
        + varint(len(shape))
        + shape
        + b"\x20"
        + varint(offset)
        + b"\x28"
        + varint(size)
    )


def write_bundle(folder: Path, tensors: list[tuple[str, int, list[int], bytes]], **kw: int) -> Path:
    """A one-shard bundle `folder/t`: (name, TF dtype code, shape, raw bytes) per tensor."""
    entries, blob = [(b"", b"\x08\x01\x10" + varint(kw.pop("endianness", 0)))], b""
    for name, dtype, dims, raw in sorted(tensors):
        entries.append((name.encode(), entry_proto(dtype, dims, len(blob), len(raw))))
        blob += raw
    write_table(folder / "t.index", entries, **kw)
    (folder / "t.data-00000-of-00001").write_bytes(blob)
    return folder / "t"


# ---- genuine TF checkpoints ---------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_sample_matches_expected(sample: Path, expected: dict, style: str) -> None:
    want = expected[style]["tensors"]
    ckpt = TFCheckpoint(sample / expected[style]["prefix"])
    assert list(ckpt) == sorted(want, key=str.encode)  # stored in byte-wise sorted order
    for name, info in ckpt.entries().items():
        value = ckpt.read(name)
        assert (info.dtype, list(info.shape)) == (want[name]["dtype"], want[name]["shape"]), name
        assert (value.dtype.name, list(value.shape)) == (want[name]["dtype"], want[name]["shape"])
        assert (
            hashlib.sha256(value.astype(value.dtype.newbyteorder("<")).tobytes()).hexdigest()
            == (want[name]["sha256_le_c_order"])
        ), name
        assert value.ravel()[:5].tolist() == want[name]["first5"], name
        if "values" in want[name]:
            assert value.ravel().tolist() == want[name]["values"], name


def test_train_style_global_step_and_filter(sample: Path) -> None:
    ckpt = TFCheckpoint(sample / "train_style")
    step = ckpt.read("Global_Step")
    assert step.dtype == np.int32 and step.shape == () and int(step) == 1
    assert ckpt.read("resnet_v2_50/beta1_power") == np.float32(0.9) * np.float32(0.9)  # one Adam step
    kept = model_tensors(ckpt)
    dropped = set(ckpt) - {info.key for info in kept.values()}
    slots = {name for name in dropped if name.startswith("resnet_v2_50/resnet_v2_50/")}
    assert len(dropped) == 31 and len(kept) == 24
    assert dropped - slots == {"Global_Step", "resnet_v2_50/beta1_power", "resnet_v2_50/beta2_power"}
    assert len(slots) == 28 and all(name.rsplit("/", 1)[1] in ("Adam", "Adam_1") for name in slots)


def test_init_style_keys_keep_colon_zero_until_filtered(sample: Path) -> None:
    init = TFCheckpoint(sample / "init_style" / "sample_init.ckpt.index")
    train = TFCheckpoint(sample / "train_style" / "model.ckpt-1")
    assert len(init) == 24 and all(name.endswith(":0") for name in init)
    kept = model_tensors(init)
    assert list(kept) == list(model_tensors(train)) == [name[:-2] for name in init]
    name = "resnet_v2_50/conv1/weights"
    assert kept[name].key == name + ":0"
    assert np.array_equal(init.read(kept[name].key), train.read(name))


def test_deepscene_dev_entries_match_the_variable_list(shared_data: Path) -> None:
    folder = shared_data / "deepscene-tf-dev"
    listing = shared_data.parent / "reference" / "tf-variables" / "adapnetpp.txt"
    if not folder.is_dir() or not listing.is_file():
        pytest.skip("deepscene-tf-dev checkpoint or its variable list not present")
    want = []
    for line in listing.read_text(encoding="utf-8").splitlines():
        name, shape, dtype = line.split("\t")
        want.append((name, tuple(json.loads(shape)), dtype))
    ckpt = TFCheckpoint(folder)  # the folder's `checkpoint` file is not needed
    entries = ckpt.entries()
    assert [(i.key, i.shape, i.dtype) for i in entries.values()] == want
    assert len(entries) == 389 and sum(i.numel for i in entries.values()) == 30_204_493
    small = ckpt.read("Global_Step")
    largest = max(entries.values(), key=lambda i: i.size)
    big = ckpt.read(largest.key)  # CRC-checked
    assert big.shape == largest.shape and big.dtype == np.float32 and np.isfinite(big).all()
    assert small.shape == () and small.dtype == np.int32


# ---- resolving a path ---------------------------------------------------------------------------


def test_resolve_prefix_forms(sample: Path) -> None:
    prefix = sample / "train_style" / "model.ckpt-1"
    for path in (prefix, Path(f"{prefix}.index"), Path(f"{prefix}.data-00000-of-00001"), prefix.parent):
        assert resolve_prefix(path) == prefix


def test_folder_with_no_index_is_refused(tmp_path: Path) -> None:
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "/elsewhere/model.ckpt-1"\n')
    with pytest.raises(CheckpointError) as exc:
        TFCheckpoint(tmp_path)
    refusal(exc, tmp_path, "no TensorFlow checkpoint")
    with pytest.raises(CheckpointError) as exc:
        resolve_prefix(tmp_path / "model.ckpt-1")
    refusal(exc, tmp_path / "model.ckpt-1")


def test_folder_with_two_indexes(sample: Path, tmp_path: Path) -> None:
    for name in ("model.ckpt-1", "model.ckpt-2"):
        for suffix in (".index", ".data-00000-of-00001"):
            (tmp_path / f"{name}{suffix}").symlink_to(sample / "train_style" / f"model.ckpt-1{suffix}")
    with pytest.raises(CheckpointError) as exc:
        resolve_prefix(tmp_path)
    refusal(exc, tmp_path, "model.ckpt-1.index", "model.ckpt-2.index")
    # An absolute path from another machine still picks the bundle by its base name.
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "/home/someone/run/model.ckpt-2"\n')
    assert resolve_prefix(tmp_path) == tmp_path / "model.ckpt-2"
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "/home/someone/run/model.ckpt-9"\n')
    with pytest.raises(CheckpointError):
        resolve_prefix(tmp_path)


# ---- broken files -------------------------------------------------------------------------------


def copy_sample(sample: Path, tmp_path: Path) -> tuple[Path, Path]:
    for path in (sample / "train_style").glob("model.ckpt-1.*"):
        shutil.copyfile(path, tmp_path / path.name)
    return tmp_path / "model.ckpt-1.index", tmp_path / "model.ckpt-1.data-00000-of-00001"


def test_truncated_data_file_is_refused(sample: Path, tmp_path: Path) -> None:
    _, data = copy_sample(sample, tmp_path)
    data.write_bytes(data.read_bytes()[:-100])
    ckpt = TFCheckpoint(tmp_path)
    last = max(ckpt.entries().values(), key=lambda i: i.offset + i.size)
    with pytest.raises(CheckpointError) as exc:
        ckpt.read(last.key)
    refusal(exc, data, repr(last.key), "past the end")
    assert ckpt.read("Global_Step") == 1  # the rest stays readable


def test_corrupt_data_byte_fails_the_crc(sample: Path, tmp_path: Path) -> None:
    _, data = copy_sample(sample, tmp_path)
    info = TFCheckpoint(tmp_path).entries()["resnet_v2_50/conv1/weights"]
    raw = bytearray(data.read_bytes())
    raw[info.offset + 17] ^= 0x40
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError) as exc:
        TFCheckpoint(tmp_path).read(info.key)
    refusal(exc, data, repr(info.key), "CRC")
    assert TFCheckpoint(tmp_path).read(info.key, verify=False).shape == (7, 7, 3, 64)


@pytest.mark.parametrize(("where", "problem"), [(40, "CRC"), (-1, "magic")])
def test_corrupt_index_byte_is_refused(sample: Path, tmp_path: Path, where: int, problem: str) -> None:
    index, _ = copy_sample(sample, tmp_path)
    raw = bytearray(index.read_bytes())
    raw[where] ^= 0x01
    index.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError) as exc:
        TFCheckpoint(index)
    refusal(exc, index, problem)


def test_written_bundle_round_trips(tmp_path: Path) -> None:
    values = {
        "a": (1, np.arange(6, dtype="<f4").reshape(2, 3)),
        "b/c": (9, np.array([-(2**40), 7], dtype="<i8")),
        "d": (10, np.array([True, False, True])),
        "e": (2, np.array(2.5, dtype="<f8")),
    }
    prefix = write_bundle(
        tmp_path, [(n, code, list(v.shape), v.tobytes()) for n, (code, v) in values.items()]
    )
    ckpt = TFCheckpoint(prefix)
    assert list(ckpt) == ["a", "b/c", "d", "e"]
    for name, (_, value) in values.items():
        got = ckpt.read(name)
        assert got.dtype == value.dtype and np.array_equal(got, value)  # no CRC stored: size check only


def test_unknown_dtype_is_refused(tmp_path: Path) -> None:
    write_bundle(tmp_path, [("w", 99, [2], b"\0" * 8)])
    with pytest.raises(CheckpointError) as exc:
        TFCheckpoint(tmp_path)
    refusal(exc, tmp_path / "t.index", "'w'", "dtype")


def test_unconvertible_dtype_and_bad_size_are_refused(tmp_path: Path) -> None:
    prefix = write_bundle(tmp_path, [("s", 7, [1], b"x"), ("f", 1, [3], b"\0" * 8)])
    ckpt = TFCheckpoint(prefix)
    for name, problem in (("s", "string"), ("f", "needs 12")):
        with pytest.raises(CheckpointError) as exc:
            ckpt.read(name)
        refusal(exc, tmp_path / "t.data-00000-of-00001", repr(name), problem)


def test_compressed_table_and_big_endian_are_refused(tmp_path: Path) -> None:
    write_bundle(tmp_path, [("w", 1, [1], b"\0" * 4)], compression=1)
    with pytest.raises(CheckpointError) as exc:
        TFCheckpoint(tmp_path)
    refusal(exc, tmp_path / "t.index", "compressed")
    write_bundle(tmp_path, [("w", 1, [1], b"\0" * 4)], endianness=1)
    with pytest.raises(CheckpointError) as exc:
        TFCheckpoint(tmp_path)
    refusal(exc, tmp_path / "t.index", "big-endian")


@pytest.mark.parametrize("size", [0, 1, 9, 2047, 2048, 2051, 70_001, 1 << 18])
def test_crc32c_lanes_agree_with_the_table_loop(size: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert crc32c(data) == _raw_short(data, 0xFFFFFFFF) ^ 0xFFFFFFFF
    assert crc32c(b"123456789") == 0xE3069283
