"""The LevelDB-style sorted table TensorFlow writes as a bundle's `.index`, and protobuf wire decoding.

Table layout (LevelDB `table_format`): data blocks, a metaindex block, an index block, then a 48-byte
footer: two block handles (varint offset, varint size), zero padding to 40 bytes, and the 8-byte magic
number. Each block is followed by a 5-byte trailer: a compression byte (0 = none; TF writes its index
uncompressed) and the masked CRC-32C of the block plus that byte. A block holds prefix-compressed
entries (varints shared, unshared, value length; the unshared key bytes; the value), then uint32
restart offsets and their count. The index block maps a separator key to the handle of each data block.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fusionseg.errors import CheckpointError
from fusionseg.tfimport.crc32c import crc32c, unmask

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
TRAILER_SIZE = 5


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode one base-128 varint at `pos`; returns (value, next position). Raises ValueError."""
    value = 0
    shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def signed64(value: int) -> int:
    """Reinterpret a decoded varint as a two's-complement int64 (protobuf int64 fields)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def proto_fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) for each field of a serialized protobuf message, in wire order.

    Varints and fixed-width fields come back as ints, length-delimited ones as bytes.
    Raises ValueError on malformed input.
    """
    pos = 0
    while pos < len(buf):
        tag, pos = read_varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > len(buf):
                raise ValueError("truncated fixed-width field")
            value = int.from_bytes(buf[pos : pos + width], "little")
            pos += width
        elif wire == 2:
            length, pos = read_varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated length-delimited field")
            value = buf[pos : pos + length]
            pos += length
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield field, value


def _read_handle(buf: bytes, pos: int) -> tuple[tuple[int, int], int]:
    offset, pos = read_varint(buf, pos)
    size, pos = read_varint(buf, pos)
    return (offset, size), pos


def _read_block(data: bytes, handle: tuple[int, int], path: Path, what: str) -> bytes:
    offset, size = handle
    end = offset + size
    if end + TRAILER_SIZE > len(data):
        raise CheckpointError(f"{path}: {what} at byte {offset} runs past the end of the file")
    compression = data[end]
    if compression != 0:
        raise CheckpointError(
            f"{path}: {what} at byte {offset} is compressed (type {compression}); only uncompressed "
            "tables are supported"
        )
    stored = unmask(int.from_bytes(data[end + 1 : end + TRAILER_SIZE], "little"))
    if crc32c(data[offset : end + 1]) != stored:
        raise CheckpointError(f"{path}: {what} at byte {offset} fails its CRC-32C check (corrupt index)")
    return data[offset:end]


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of each entry of one block, in stored order. Raises ValueError."""
    if len(block) < 4:
        raise ValueError("block shorter than its restart count")
    num_restarts = int.from_bytes(block[-4:], "little")
    limit = len(block) - 4 - 4 * num_restarts
    if num_restarts < 1 or limit < 0:
        raise ValueError(f"bad restart count {num_restarts}")
    key = b""
    pos = 0
    while pos < limit:
        shared, pos = read_varint(block, pos)
        unshared, pos = read_varint(block, pos)
        value_len, pos = read_varint(block, pos)
        if shared > len(key) or pos + unshared + value_len > limit:
            raise ValueError(f"entry at byte {pos} overruns its block")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_len]
        pos += value_len


def read_table(path: Path) -> list[tuple[bytes, bytes]]:
    """Every (key, value) pair of the table at `path`, in stored (sorted) order.

    Raises:
        CheckpointError: unreadable file, bad footer or magic, a compressed or corrupt block.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the index ({exc.strerror})") from exc
    if len(data) < FOOTER_SIZE:
        raise CheckpointError(f"{path}: index file of {len(data)} bytes is shorter than a table footer")
    footer = data[-FOOTER_SIZE:]
    if int.from_bytes(footer[-8:], "little") != TABLE_MAGIC:
        raise CheckpointError(f"{path}: not a TensorFlow bundle index (bad table magic number)")
    try:
        _, pos = _read_handle(footer, 0)  # the metaindex: TF writes it empty
        index_handle, _ = _read_handle(footer, pos)
    except ValueError as exc:
        raise CheckpointError(f"{path}: corrupt table footer ({exc})") from exc
    entries = []
    try:
        index = _read_block(data, index_handle, path, "index block")
        for _, handle_bytes in _block_entries(index):
            handle, _ = _read_handle(handle_bytes, 0)
            block = _read_block(data, handle, path, "data block")
            entries.extend(_block_entries(block))
    except ValueError as exc:
        raise CheckpointError(f"{path}: corrupt table block ({exc})") from exc
    return entries
