"""CRC-32C (Castagnoli), as TensorFlow and LevelDB checksum their files; numpy only.

A byte-at-a-time table loop in Python runs at about 1 MB/s, too slow for a 120 MB checkpoint. The
checksum is linear over GF(2), so a long buffer is cut into up to 65,536 equal lanes that advance
together, four bytes per numpy step (slicing-by-4 over a lane-major array), and the lane checksums are
then merged pairwise in a tree with the "append n zero bytes" operator (a 32×32 bit matrix applied
through four byte tables). Leading zero bytes do not change a zero-initialised CRC, so the buffer is
front-padded to fill the lanes exactly. Short buffers use the plain table loop.
"""

from __future__ import annotations

import numpy as np

_POLY = 0x82F63B78  # CRC-32C, bit-reflected
_MASK_DELTA = 0xA282EAD8  # LevelDB's mask, which TF uses too
_SHORT = 2048  # below this many bytes the table loop is faster than numpy
_MAX_LANES = 1 << 16


def _make_tables() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1).astype(np.uint32)
    tables = [table]
    for _ in range(3):  # slicing-by-4: tables[k][b] = CRC of byte b followed by k zero bytes
        prev = tables[-1]
        tables.append((prev >> 8) ^ table[prev & 0xFF])
    return np.stack(tables)


_TABLES = _make_tables()
_TABLE0 = [int(v) for v in _TABLES[0]]


def _raw_short(data: bytes | memoryview, crc: int) -> int:
    for byte in bytes(data):
        crc = _TABLE0[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def _apply(matrix: list[int], vector: int) -> int:
    """Multiply a GF(2) matrix (its 32 columns) by a 32-bit vector."""
    out = 0
    bit = 0
    while vector:
        if vector & 1:
            out ^= matrix[bit]
        vector >>= 1
        bit += 1
    return out


def _zeros_operator(n_bytes: int) -> list[int]:
    """The matrix that advances a zero-initialised CRC register over `n_bytes` zero bytes."""
    result = [1 << i for i in range(32)]
    power = [_raw_short(b"\0", 1 << i) for i in range(32)]  # one zero byte
    while n_bytes:
        if n_bytes & 1:
            result = [_apply(power, col) for col in result]
        power = [_apply(power, col) for col in power]
        n_bytes >>= 1
    return result


def _byte_tables(matrix: list[int]) -> np.ndarray:
    """tables[k][b] = matrix · (b << 8k), so a matrix applies to a uint32 array in four look-ups."""
    cols = np.array(matrix, dtype=np.uint32)
    values = np.arange(256)
    tables = np.zeros((4, 256), dtype=np.uint32)
    for k in range(4):
        for j in range(8):
            tables[k][(values >> j) & 1 == 1] ^= cols[8 * k + j]
    return tables


def _apply_array(tables: np.ndarray, crcs: np.ndarray) -> np.ndarray:
    return (
        tables[0][crcs & 0xFF]
        ^ tables[1][(crcs >> 8) & 0xFF]
        ^ tables[2][(crcs >> 16) & 0xFF]
        ^ tables[3][crcs >> 24]
    )


def _raw_lanes(data: bytes | memoryview) -> int:
    """Zero-initialised, un-inverted CRC of `data`, computed in parallel lanes."""
    n_words = -(-len(data) // 4)
    lanes = 1
    while lanes * 2 <= min(_MAX_LANES, n_words // 64):
        lanes *= 2
    lane_words = -(-n_words // lanes)
    padded = np.zeros(lanes * lane_words * 4, dtype=np.uint8)
    padded[len(padded) - len(data) :] = np.frombuffer(data, dtype=np.uint8)
    words = padded.view("<u4").reshape(lanes, lane_words).T.copy()  # one row per step
    t0, t1, t2, t3 = _TABLES
    crcs = np.zeros(lanes, dtype=np.uint32)
    for row in words:
        crcs ^= row
        crcs = t3[crcs & 0xFF] ^ t2[(crcs >> 8) & 0xFF] ^ t1[(crcs >> 16) & 0xFF] ^ t0[crcs >> 24]
    span = lane_words * 4
    while len(crcs) > 1:  # crc(A + B) = zeros(len(B)) · crc(A) ^ crc(B)
        crcs = _apply_array(_byte_tables(_zeros_operator(span)), crcs[0::2]) ^ crcs[1::2]
        span *= 2
    return int(crcs[0])


def crc32c(data: bytes | memoryview) -> int:
    """The standard CRC-32C of `data` (crc32c(b"123456789") == 0xE3069283)."""
    if len(data) < _SHORT:
        return _raw_short(data, 0xFFFFFFFF) ^ 0xFFFFFFFF
    # The register starts at ~0: that adds the zeros operator applied to ~0 to the zero-start CRC.
    start = _apply(_zeros_operator(len(data)), 0xFFFFFFFF)
    return _raw_lanes(data) ^ start ^ 0xFFFFFFFF


def unmask(masked: int) -> int:
    """Undo LevelDB's CRC masking (rotate right by 15 bits after subtracting a constant)."""
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
