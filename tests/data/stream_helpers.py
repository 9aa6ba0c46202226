"""Test helpers for stream sources: coloured frames, tiny videos and ROS 1/2 bags written here."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

H, W = 32, 48


def colour(index: int) -> np.ndarray:
    """A frame whose mean colour encodes its index (survives lossy codecs)."""
    image = np.zeros((H, W, 3), np.uint8)
    image[:, :, 0] = 20 * index  # B
    image[:, :, 2] = 200 - 20 * index  # R
    return image


def write_video(path: Path, frames: int, fourcc: str = "MJPG", fps: float = 5.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H))
    assert writer.isOpened(), f"this OpenCV cannot write {fourcc}"
    for i in range(frames):
        writer.write(colour(i))
    writer.release()
    return path


def image_msg(typestore, stamp_ns: int, array: np.ndarray, encoding: str, ros1: bool):
    types = typestore.types
    time = types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    header_type = types["std_msgs/msg/Header"]
    header = (
        header_type(seq=0, stamp=time, frame_id="cam") if ros1 else header_type(stamp=time, frame_id="cam")
    )
    height, width = array.shape[:2]
    data = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
    return types["sensor_msgs/msg/Image"](
        header=header,
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=data.size // height,
        data=data,
    )


def compressed_msg(typestore, stamp_ns: int, bgr: np.ndarray):
    types = typestore.types
    time = types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    ok, png = cv2.imencode(".png", bgr)
    assert ok
    header = types["std_msgs/msg/Header"](stamp=time, frame_id="cam")
    return types["sensor_msgs/msg/CompressedImage"](header=header, format="png", data=png.reshape(-1))


CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
BAG_K = (50.0, 0.0, 23.5, 0.0, 52.0, 15.5, 0.0, 0.0, 1.0)  # fx, fy, cx, cy = 50, 52, 23.5, 15.5


def camera_info_msg(typestore, stamp_ns: int, ros1: bool):
    """A CameraInfo with K = BAG_K (ROS 1 names its matrices D, K, R, P; ROS 2 d, k, r, p)."""
    types = typestore.types
    time = types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    header_type = types["std_msgs/msg/Header"]
    header = (
        header_type(seq=0, stamp=time, frame_id="cam") if ros1 else header_type(stamp=time, frame_id="cam")
    )
    roi = types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    matrices = {
        "d": np.zeros(5),
        "k": np.array(BAG_K),
        "r": np.eye(3).reshape(-1),
        "p": np.zeros(12),
    }
    matrices = {(name.upper() if ros1 else name): value for name, value in matrices.items()}
    return types[CAMERA_INFO](
        header=header,
        height=H,
        width=W,
        distortion_model="plumb_bob",
        binning_x=0,
        binning_y=0,
        roi=roi,
        **matrices,
    )


def write_bag(path: Path, ros1: bool) -> Path:
    """rgb8 colour at 0, 100, 200, 300 ms; 16UC1 depth 5 ms later except for the frame at 200 ms."""
    rosbags = pytest.importorskip("rosbags")
    from rosbags.typesys import Stores, get_typestore

    assert rosbags
    typestore = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
    if ros1:
        from rosbags.rosbag1 import Writer

        writer, serialize = Writer(path), typestore.serialize_ros1
    else:
        from rosbags.rosbag2 import Writer

        writer, serialize = Writer(path, version=9), typestore.serialize_cdr
    image_type = "sensor_msgs/msg/Image"
    with writer:
        rgb = writer.add_connection("/camera/color", image_type, typestore=typestore)
        depth = writer.add_connection("/camera/depth", image_type, typestore=typestore)
        info = writer.add_connection("/camera/info", CAMERA_INFO, typestore=typestore)
        writer.write(info, 10**9, serialize(camera_info_msg(typestore, 10**9, ros1), CAMERA_INFO))
        for i, stamp in enumerate((0, 100, 200, 300)):
            t = 10**9 + stamp * 10**6
            msg = image_msg(typestore, t, colour(i)[:, :, ::-1], "rgb8", ros1)
            writer.write(rgb, t, serialize(msg, image_type))
            if stamp != 200:
                d = image_msg(typestore, t + 5 * 10**6, np.full((H, W), 1000 + i, np.uint16), "16UC1", ros1)
                writer.write(depth, t + 5 * 10**6, serialize(d, image_type))
    return path


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame OpenCV decodes from a video file."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames
