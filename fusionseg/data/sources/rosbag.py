"""Frames from ROS 1 (.bag) and ROS 2 (folder) bags through the optional `rosbags` package.

`pip install 'fusionseg[ros]'`. Colour comes from a `sensor_msgs/Image` (rgb8, bgr8, rgba8, bgra8,
mono8) or `sensor_msgs/CompressedImage` topic, raw depth optionally from a second topic (16UC1 /
mono16 in sensor units, 32FC1 in metres with NaN/inf read as 0 = missing, or compressed PNG, including
image_transport's compressedDepth). Each colour message is paired with the depth message whose stamp
is nearest, within a tolerance. Stamps are the messages' header stamps (their bag time when zero).
Intrinsics, when asked for, come from the first `sensor_msgs/CameraInfo` message of a topic (its K
matrix: ROS and OpenCV both put pixel centres at integer coordinates, i.e. 0-based).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fusionseg.data.sources.frames import Frame, _as_bgr
from fusionseg.errors import ConfigError, DataError
from fusionseg.modalities.intrinsics import Intrinsics

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
# encoding -> (dtype, channels, conversion to cv2.imread's order or None)
ENCODINGS: dict[str, tuple[type, int, int | None]] = {
    "rgb8": (np.uint8, 3, cv2.COLOR_RGB2BGR),
    "bgr8": (np.uint8, 3, None),
    "rgba8": (np.uint8, 4, cv2.COLOR_RGBA2BGR),
    "bgra8": (np.uint8, 4, cv2.COLOR_BGRA2BGR),
    "mono8": (np.uint8, 1, None),
    "8uc1": (np.uint8, 1, None),
    "8uc3": (np.uint8, 3, None),
    "mono16": (np.uint16, 1, None),
    "16uc1": (np.uint16, 1, None),
    "32fc1": (np.float32, 1, None),
}
COMPRESSED_DEPTH_HEADER = 12  # image_transport compressedDepth: format enum + 2 floats before the PNG


def _reader_class() -> Any:
    try:
        from rosbags.highlevel import AnyReader
    except ImportError:
        raise ConfigError(
            "reading ROS bags needs the optional `rosbags` package: pip install 'fusionseg[ros]'"
        ) from None
    return AnyReader


def _default_typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.LATEST)


def decode_image_message(msg: Any, msgtype: str, where: str) -> np.ndarray:
    """A `sensor_msgs` Image or CompressedImage as `cv2.imread(..., IMREAD_UNCHANGED)` would give it.

    Returns:
        (H, W, 3) uint8 BGR for colour encodings, (H, W) for mono8/16UC1/32FC1.

    Raises:
        DataError: unknown encoding, a data buffer shorter than height x step, or undecodable bytes.
    """
    if msgtype == COMPRESSED_TYPE:
        data = np.asarray(msg.data, dtype=np.uint8)
        if "compresseddepth" in str(msg.format).lower():
            data = data[COMPRESSED_DEPTH_HEADER:]
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if image is None:
            raise DataError(f"{where}: compressed image ({msg.format!r}) does not decode")
        return image
    encoding = str(msg.encoding).lower()
    if encoding not in ENCODINGS:
        raise DataError(f"{where}: unsupported encoding {msg.encoding!r} (supported: {', '.join(ENCODINGS)})")
    dtype, channels, conversion = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * np.dtype(dtype).itemsize
    data = np.asarray(msg.data, dtype=np.uint8)
    if height < 1 or width < 1 or step < row_bytes or data.size < height * step:
        raise DataError(
            f"{where}: {width}x{height} {encoding} needs {height} rows of >= {row_bytes} bytes, "
            f"got step {step} and {data.size} bytes"
        )
    rows = data[: height * step].reshape(height, step)[:, :row_bytes]  # (H, row bytes)
    order = ">" if msg.is_bigendian else "<"
    image = np.ascontiguousarray(rows).view(np.dtype(dtype).newbyteorder(order)).astype(dtype)
    image = image.reshape(height, width, channels) if channels > 1 else image.reshape(height, width)
    return cv2.cvtColor(image, conversion) if conversion is not None else image


def _as_depth(image: np.ndarray, where: str) -> np.ndarray:
    if image.ndim != 2 or image.dtype not in (np.uint16, np.float32):
        raise DataError(f"{where}: depth must be 16UC1/mono16 or 32FC1, got {image.dtype} {image.shape}")
    if image.dtype == np.float32:
        return np.where(np.isfinite(image), image, np.float32(0.0)).astype(np.float32)  # NaN = missing
    return image


def _stamp_ns(msg: Any, bag_time_ns: int) -> int:
    header = getattr(msg, "header", None)
    stamp = getattr(header, "stamp", None)
    if stamp is None:
        return bag_time_ns
    value = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return value if value > 0 else bag_time_ns


class RosbagSource:
    """Colour (and optional raw depth) frames of one ROS 1 or ROS 2 bag.

    Args:
        path: A ROS 1 ``.bag`` file or a ROS 2 bag folder (metadata.yaml with .db3 or .mcap).
        rgb_topic: Image or CompressedImage topic with the colour frames.
        depth_topic: Optional depth topic; each colour frame gets the depth message nearest in time.
        max_offset_s: Largest stamp difference accepted for a pair; a colour frame without a depth
            message that close is a bad frame (reported, skipped).
        camera_info_topic: Optional CameraInfo topic; its first message's K gives every frame's
            `intrinsics` (those of the depth camera when depth is registered to colour).

    Raises:
        ConfigError: `rosbags` is not installed.
        DataError: the bag cannot be opened, or a topic is missing or is not an image topic.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        rgb_topic: str,
        depth_topic: str | None = None,
        max_offset_s: float = 0.02,
        camera_info_topic: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.camera_info_topic = camera_info_topic
        self.intrinsics: Intrinsics | None = None
        self.name = str(self.path)
        self.rgb_topic = rgb_topic
        self.depth_topic = depth_topic
        self.max_offset_ns = int(round(max_offset_s * 1e9))
        with self._open() as reader:
            self.count = sum(c.msgcount for c in self._connections(reader, rgb_topic))
            if depth_topic is not None:
                self._connections(reader, depth_topic)
            if camera_info_topic is not None:
                self.intrinsics = self._read_intrinsics(reader, camera_info_topic)

    @contextmanager
    def _open(self) -> Iterator[Any]:
        """The opened reader (closed on exit); DataError naming the bag when it cannot be read."""
        reader_class = _reader_class()
        if not self.path.exists():
            raise DataError(f"{self.path}: no such ROS bag")
        try:
            reader = reader_class([self.path], default_typestore=_default_typestore())
            reader.open()
        except Exception as exc:  # noqa: BLE001 - rosbags raises several unrelated error types
            raise DataError(f"{self.path}: not a readable ROS bag ({type(exc).__name__}: {exc})") from None
        try:
            yield reader
        finally:
            reader.close()

    def _connections(
        self, reader: Any, topic: str, types: tuple[str, ...] = (IMAGE_TYPE, COMPRESSED_TYPE)
    ) -> list[Any]:
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            topics = sorted({c.topic for c in reader.connections})
            raise DataError(f"{self.path}: no topic {topic!r} (topics: {', '.join(topics) or 'none'})")
        bad = [c.msgtype for c in connections if c.msgtype not in types]
        if bad:
            wanted = " or ".join(t.rsplit("/", 1)[-1] for t in types)
            raise DataError(f"{self.path}: topic {topic!r} carries {bad[0]}, not {wanted}")
        return connections

    def _read_intrinsics(self, reader: Any, topic: str) -> Intrinsics:
        """fx, fy, cx, cy from the K matrix of the topic's first CameraInfo message."""
        for connection, _, raw in reader.messages(
            connections=self._connections(reader, topic, (CAMERA_INFO_TYPE,))
        ):
            msg = reader.deserialize(raw, connection.msgtype)
            k = np.asarray(getattr(msg, "k", getattr(msg, "K", ())), dtype=np.float64).reshape(-1)
            try:
                return Intrinsics(float(k[0]), float(k[4]), float(k[2]), float(k[5]))
            except (IndexError, ValueError) as exc:
                raise DataError(
                    f"{self.path}: {topic}: CameraInfo K is not a usable camera matrix ({exc})"
                ) from None
        raise DataError(f"{self.path}: {topic}: no CameraInfo message")

    def __len__(self) -> int:
        return self.count

    def _depth_index(self, reader: Any) -> list[tuple[int, int]]:
        """Sorted (stamp ns, bag time ns) of every depth message (bad ones left out)."""
        assert self.depth_topic is not None
        index = []
        for connection, bag_time, raw in reader.messages(
            connections=self._connections(reader, self.depth_topic)
        ):
            try:
                index.append((_stamp_ns(reader.deserialize(raw, connection.msgtype), bag_time), bag_time))
            except Exception:  # noqa: BLE001,S112 - a damaged depth message pairs with nothing
                continue
        return sorted(index)

    def _nearest_depth(self, reader: Any, index: list[tuple[int, int]], stamp: int, where: str) -> np.ndarray:
        position = bisect.bisect_left(index, (stamp, -1))
        candidates = [index[i] for i in (position - 1, position) if 0 <= i < len(index)]
        if not candidates:
            raise DataError(f"{where}: no depth message on {self.depth_topic!r}")
        best_stamp, bag_time = min(candidates, key=lambda item: abs(item[0] - stamp))
        offset = abs(best_stamp - stamp)
        if offset > self.max_offset_ns:
            raise DataError(
                f"{where}: no depth message on {self.depth_topic!r} within {self.max_offset_ns / 1e9:g} s "
                f"(nearest {offset / 1e9:.3f} s away)"
            )
        connections = self._connections(reader, str(self.depth_topic))
        for connection, _, raw in reader.messages(connections=connections, start=bag_time, stop=bag_time + 1):
            msg = reader.deserialize(raw, connection.msgtype)
            if _stamp_ns(msg, bag_time) == best_stamp:
                depth_where = f"{self.path}: {self.depth_topic} at {best_stamp} ns"
                return _as_depth(decode_image_message(msg, connection.msgtype, depth_where), depth_where)
        raise DataError(f"{where}: depth message at {best_stamp} ns could not be read back")

    def __iter__(self) -> Iterator[Frame]:
        with self._open() as reader:
            depth_index = self._depth_index(reader) if self.depth_topic is not None else None
            messages = reader.messages(connections=self._connections(reader, self.rgb_topic))
            for number, (connection, bag_time, raw) in enumerate(messages):
                where = f"{self.path}: {self.rgb_topic} message {number}"
                stamp = bag_time
                try:
                    msg = reader.deserialize(raw, connection.msgtype)
                    stamp = _stamp_ns(msg, bag_time)
                    rgb = _as_bgr(decode_image_message(msg, connection.msgtype, where), where)
                    depth = None
                    if depth_index is not None:
                        depth = self._nearest_depth(reader, depth_index, stamp, where)
                        if depth.shape != rgb.shape[:2]:
                            raise DataError(
                                f"{where}: depth {depth.shape[1]}x{depth.shape[0]} does not match the colour "
                                f"image ({rgb.shape[1]}x{rgb.shape[0]}, width x height)"
                            )
                except DataError as exc:
                    yield Frame(number, str(stamp), stamp / 1e9, error=str(exc))
                    continue
                except Exception as exc:  # noqa: BLE001 - a damaged message fails alone
                    yield Frame(
                        number, str(stamp), stamp / 1e9, error=f"{where}: {type(exc).__name__}: {exc}"
                    )
                    continue
                yield Frame(number, str(stamp), stamp / 1e9, rgb=rgb, depth=depth, intrinsics=self.intrinsics)
