"""Read TensorFlow-1 "V2" checkpoints (tensor bundles) without TensorFlow.

A bundle is `<prefix>.index`, a sorted table (see `table.py`) mapping each tensor name to a
serialized `BundleEntryProto` (dtype, shape, shard id, byte offset, size, masked CRC-32C) and the
empty key to a `BundleHeaderProto` (shard count, endianness), plus data files
`<prefix>.data-SSSSS-of-NNNNN` holding the raw tensor bytes, little-endian, C order, back to back
(`reference/deepscene-tf.md` §1). The few protobuf fields needed are decoded by hand.

Checksums: every table block's CRC is checked when the index is opened. Each tensor's CRC-32C is
checked when it is read (`verify=True`, the default), with the numpy lane-parallel CRC of
`crc32c.py` (about 150 MB/s, so a whole 120 MB checkpoint costs under a second more); its size is
always checked against the dtype and shape and against the data file's length.

`TFCheckpoint` returns names exactly as stored; `model_tensors` is the one place that strips a
literal `:0` and drops `Global_Step` and Adam optimizer entries.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusionseg.errors import CheckpointError
from fusionseg.tfimport.crc32c import crc32c, unmask
from fusionseg.tfimport.table import proto_fields, read_table, signed64

# TensorFlow's DataType enum (types.proto) -> numpy dtype name, or None where numpy cannot hold it.
DTYPES: dict[int, str | None] = {
    1: "float32",
    2: "float64",
    3: "int32",
    4: "uint8",
    5: "int16",
    6: "int8",
    7: None,  # string
    8: "complex64",
    9: "int64",
    10: "bool",
    14: None,  # bfloat16
    17: "uint16",
    18: "complex128",
    19: "float16",
    22: "uint32",
    23: "uint64",
}
TF_NAMES = {7: "string", 14: "bfloat16", 20: "resource", 21: "variant"}
OPTIMIZER_SLOTS = ("Adam", "Adam_1")
_CHECKPOINT_LINE = re.compile(r'^model_checkpoint_path:\s*"(.*)"\s*$', re.MULTILINE)


@dataclass(frozen=True)
class TensorInfo:
    """Where one stored tensor lives; `key` is its name exactly as stored in the index."""

    key: str
    dtype: str  # numpy dtype name, or the TF name of a type numpy cannot hold ("string", "bfloat16")
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int | None  # unmasked; None when the entry carries none
    sliced: bool = False

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def _data_path(prefix: Path, shard: int, num_shards: int) -> Path:
    return prefix.with_name(f"{prefix.name}.data-{shard:05d}-of-{num_shards:05d}")


def _index_path(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".index")


def resolve_prefix(path: str | Path) -> Path:
    """The bundle prefix for a prefix, its `.index` or `.data-*` file, or a folder holding one bundle.

    In a folder with several `.index` files the `checkpoint` text file may pick one, matched by
    base name only: TF writes an absolute path there that is stale once the folder is copied.

    Raises:
        CheckpointError: nothing found, or several bundles and no usable `checkpoint` file.
    """
    path = Path(path)
    if path.is_dir():
        return _prefix_in_folder(path)
    name = re.sub(r"\.(index|data-\d{5}-of-\d{5})$", "", path.name)
    prefix = path.with_name(name)
    if not _index_path(prefix).is_file():
        raise CheckpointError(
            f"{path}: no TensorFlow checkpoint there ({_index_path(prefix).name} not found)"
        )
    return prefix


def _prefix_in_folder(folder: Path) -> Path:
    indexes = sorted(p for p in folder.glob("*.index") if p.is_file())
    if len(indexes) == 1:
        return indexes[0].with_suffix("")
    if not indexes:
        raise CheckpointError(f"{folder}: no TensorFlow checkpoint (*.index file) in this folder")
    names = [p.name for p in indexes]
    state = folder / "checkpoint"
    if state.is_file():
        match = _CHECKPOINT_LINE.search(state.read_text(encoding="utf-8", errors="replace"))
        if match:
            base = re.split(r"[\\/]", match.group(1))[-1]
            if f"{base}.index" in names:
                return folder / base
    raise CheckpointError(
        f"{folder}: several checkpoints ({', '.join(names)}) and no `checkpoint` file naming one; "
        "pass the prefix"
    )


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for field, value in proto_fields(buf):
        if field == 2:  # Dim {int64 size = 1; string name = 2}
            size = 0
            for sub_field, sub_value in proto_fields(value):
                if sub_field == 1:
                    size = signed64(sub_value)
            dims.append(size)
        elif field == 3 and value:
            raise ValueError("shape of unknown rank")
    return tuple(dims)


def _parse_entry(key: str, buf: bytes) -> TensorInfo:
    fields: dict[int, object] = {"shape": ()}
    sliced = False
    dtype_code = 0
    for field, value in proto_fields(buf):
        if field == 1:
            dtype_code = value
        elif field == 2:
            fields["shape"] = _parse_shape(value)
        elif field in (3, 4, 5, 6):
            fields[field] = value
        elif field == 7:
            sliced = True
    if dtype_code in DTYPES:
        dtype = DTYPES[dtype_code] or TF_NAMES[dtype_code]
    elif dtype_code in TF_NAMES:
        dtype = TF_NAMES[dtype_code]
    else:
        raise ValueError(f"unknown dtype code {dtype_code}")
    shape = fields["shape"]
    if any(d < 0 for d in shape):
        raise ValueError(f"negative dimension in shape {list(shape)}")
    masked = fields.get(6)
    return TensorInfo(
        key=key,
        dtype=dtype,
        shape=shape,
        shard=int(fields.get(3, 0)),
        offset=int(fields.get(4, 0)),
        size=int(fields.get(5, 0)),
        crc32c=None if masked is None else unmask(int(masked)),
        sliced=sliced,
    )


def _parse_header(buf: bytes) -> tuple[int, int]:
    num_shards, endianness = 1, 0
    for field, value in proto_fields(buf):
        if field == 1:
            num_shards = value
        elif field == 2:
            endianness = value
    return num_shards, endianness


class TFCheckpoint:
    """A TF1 V2 checkpoint opened read-only: names in stored order, metadata, and tensors on demand.

    Args:
        path: the prefix (`.../model.ckpt-1`), its `.index` file, or a folder (see `resolve_prefix`).

    Raises:
        CheckpointError: the index is missing, corrupt, big-endian, or holds an unparsable entry.
    """

    def __init__(self, path: str | Path) -> None:
        self.prefix = resolve_prefix(path)
        self.index_path = _index_path(self.prefix)
        self.num_shards, self._entries = self._load_index()

    def _load_index(self) -> tuple[int, dict[str, TensorInfo]]:
        header: tuple[int, int] | None = None
        entries: dict[str, TensorInfo] = {}
        for raw_key, value in read_table(self.index_path):
            key = raw_key.decode("utf-8", errors="replace")
            try:
                if raw_key == b"":
                    header = _parse_header(value)
                else:
                    entries[key] = _parse_entry(key, value)
            except ValueError as exc:
                where = "the bundle header" if raw_key == b"" else f"tensor {key!r}"
                raise CheckpointError(f"{self.index_path}: {where} is unreadable ({exc})") from exc
        if header is None:
            raise CheckpointError(f"{self.index_path}: no bundle header (the empty key is missing)")
        num_shards, endianness = header
        if endianness != 0:
            raise CheckpointError(f"{self.index_path}: big-endian checkpoints are not supported")
        for info in entries.values():
            if not 0 <= info.shard < max(num_shards, 1):
                raise CheckpointError(
                    f"{self.index_path}: tensor {info.key!r} names shard {info.shard} of {num_shards}"
                )
        return num_shards, entries

    def entries(self) -> dict[str, TensorInfo]:
        """Every tensor's metadata, keyed by its stored name, in stored (byte-wise sorted) order."""
        return dict(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def data_path(self, shard: int = 0) -> Path:
        return _data_path(self.prefix, shard, self.num_shards)

    def read(self, name: str, *, verify: bool = True) -> np.ndarray:
        """The tensor stored under `name` (exactly as stored), as a writable array in native order.

        Args:
            name: the stored key, `:0` suffix included if it has one.
            verify: check the tensor's CRC-32C (sizes are always checked).

        Raises:
            CheckpointError: unknown name, unsupported dtype or sliced tensor, data past the end
                of its shard, a size that does not fit dtype and shape, or a checksum mismatch.
        """
        info = self._entries.get(name)
        if info is None:
            raise CheckpointError(f"{self.index_path}: no tensor {name!r} in this checkpoint")
        data_path = self.data_path(info.shard)
        where = f"{data_path}: tensor {name!r}"
        dtype = self._numpy_dtype(info, where)
        expected = info.numel * dtype.itemsize
        if info.size != expected:
            raise CheckpointError(
                f"{where} has {info.size} bytes, but {info.dtype} {list(info.shape)} needs {expected}"
            )
        buf = self._read_bytes(data_path, info, where)
        if verify and info.crc32c is not None and crc32c(buf) != info.crc32c:
            raise CheckpointError(f"{where} fails its CRC-32C check (corrupt data file)")
        return np.frombuffer(buf, dtype=dtype).reshape(info.shape).astype(dtype.newbyteorder("="), copy=False)

    @staticmethod
    def _numpy_dtype(info: TensorInfo, where: str) -> np.dtype:
        if info.sliced:
            raise CheckpointError(f"{where} is a partitioned (sliced) variable, which is not supported")
        if info.dtype not in DTYPES.values():
            raise CheckpointError(f"{where} has dtype {info.dtype}, which this reader cannot convert")
        return np.dtype(info.dtype).newbyteorder("<")

    @staticmethod
    def _read_bytes(data_path: Path, info: TensorInfo, where: str) -> bytearray:
        try:
            with data_path.open("rb") as f:
                file_size = f.seek(0, 2)
                if info.offset + info.size > file_size:
                    raise CheckpointError(
                        f"{where} spans bytes {info.offset}..{info.offset + info.size}, past the end of "
                        f"the {file_size}-byte file (truncated?)"
                    )
                f.seek(info.offset)
                buf = bytearray(info.size)
                if f.readinto(buf) != info.size:
                    raise CheckpointError(f"{where}: short read (file changed while reading?)")
        except OSError as exc:
            raise CheckpointError(f"{where}: cannot read the data file ({exc.strerror})") from exc
        return buf


def _is_model_tensor(name: str) -> bool:
    last = name.rsplit("/", 1)[-1]
    return name != "Global_Step" and not last.endswith("_power") and last not in OPTIMIZER_SLOTS


def model_tensors(ckpt: TFCheckpoint) -> dict[str, TensorInfo]:
    """The model's own tensors, keyed by name without a literal `:0` suffix, in stored order.

    Drops `Global_Step`, Adam's `*_power` accumulators and `.../Adam`, `.../Adam_1` slots
    (`reference/deepscene-tf.md` §1). Read a tensor with `ckpt.read(info.key)`.

    Raises:
        CheckpointError: two stored names that become the same once `:0` is stripped.
    """
    out: dict[str, TensorInfo] = {}
    for key, info in ckpt.entries().items():
        name = key.removesuffix(":0")
        if not _is_model_tensor(name):
            continue
        if name in out:
            raise CheckpointError(f"{ckpt.index_path}: both {out[name].key!r} and {key!r} are stored")
        out[name] = info
    return out
