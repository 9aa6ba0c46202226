"""Frame sources (image sequences, videos, ROS 1/2 bags written here) and the overlay video writer."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from stream_helpers import H, W, colour, compressed_msg, image_msg, read_video, write_bag, write_video

from fusionseg.data.io import write_png
from fusionseg.data.sources import (
    Frame,
    ImageSequence,
    OverlayVideoWriter,
    RosbagSource,
    VideoSource,
    natural_key,
    open_source,
)
from fusionseg.data.sources.frames import read_video_frames
from fusionseg.data.sources.rosbag import decode_image_message
from fusionseg.errors import ConfigError, DataError
from fusionseg.modalities.intrinsics import Intrinsics

# --------------------------------------------------------------------------------------------------
# Image sequences
# --------------------------------------------------------------------------------------------------


def test_natural_order_and_pairing_by_stem(tmp_path: Path) -> None:
    for i in (10, 2, 1):
        write_png(tmp_path / "rgb" / f"frame{i}.png", colour(i % 7))
        write_png(tmp_path / "depth" / f"frame{i}.png", np.full((H, W), 1000 + i, np.uint16))
    assert sorted(["f10", "f2", "F1"], key=natural_key) == ["F1", "f2", "f10"]
    source = ImageSequence(tmp_path / "rgb", depth=tmp_path / "depth")
    frames = list(source)
    assert len(source) == 3 and [f.id for f in frames] == ["frame1", "frame2", "frame10"]
    assert frames[2].rgb.shape == (H, W, 3) and frames[2].rgb.dtype == np.uint8
    assert frames[2].depth.dtype == np.uint16 and int(frames[2].depth[0, 0]) == 1010
    globbed = list(open_source(str(tmp_path / "rgb" / "frame1*.png")))
    assert [f.id for f in globbed] == ["frame1", "frame10"] and globbed[0].depth is None


def test_bad_image_and_missing_or_wrong_size_depth_are_bad_frames(tmp_path: Path) -> None:
    for i in range(4):
        write_png(tmp_path / "rgb" / f"{i}.png", colour(i))
    (tmp_path / "rgb" / "1.png").write_bytes(b"not a png")
    write_png(tmp_path / "depth" / "0.png", np.ones((H, W), np.uint16))
    write_png(tmp_path / "depth" / "1.png", np.ones((H, W), np.uint16))
    write_png(tmp_path / "depth" / "2.png", np.ones((H + 1, W), np.uint16))
    frames = list(ImageSequence(tmp_path / "rgb", depth=tmp_path / "depth"))
    assert [f.error is None for f in frames] == [True, False, False, False]
    assert "1.png" in frames[1].error
    assert "2.png" in frames[2].error and "frame 2" in frames[2].error and "does not match" in frames[2].error
    assert "frame 3" in frames[3].error and "no depth image" in frames[3].error
    assert all("\n" not in f.error for f in frames[1:])
    with pytest.raises(DataError, match="no rgb images"):
        ImageSequence(tmp_path / "depth" / "*.jpg")


# --------------------------------------------------------------------------------------------------
# Videos
# --------------------------------------------------------------------------------------------------


def test_video_frames_in_order_with_index_ids_and_times(tmp_path: Path) -> None:
    source = open_source(write_video(tmp_path / "clip.avi", 6))
    assert isinstance(source, VideoSource) and len(source) == 6
    frames = list(source)
    assert [f.id for f in frames] == [f"{i:06d}" for i in range(6)]
    assert all(f.error is None and f.rgb.shape == (H, W, 3) for f in frames)
    blue = [float(f.rgb[:, :, 0].mean()) for f in frames]
    assert all(abs(b - 20 * i) < 6 for i, b in enumerate(blue)), blue  # the frames, in order
    assert frames[5].timestamp_s == pytest.approx(1.0, abs=0.05)  # 5 fps


def test_corrupt_video_is_one_line_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(DataError, match="broken.mp4: cannot open as a video") as info:
        VideoSource(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="no such video"):
        VideoSource(tmp_path / "missing.mp4")


def test_truncated_video_is_one_line_naming_it(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.avi", 8)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # cut inside the frames: no index, no end of list
    with pytest.raises(DataError) as info:
        VideoSource(path)
    assert str(info.value).startswith(f"{path}: cannot open as a video") and "\n" not in str(info.value)


class _FlakyCapture:
    """A capture whose frame 2 cannot be decoded (as a damaged packet in the middle of a file)."""

    def __init__(self, count: int) -> None:
        self.count, self.position, self.seeks = count, 0, []

    def read(self) -> tuple[bool, np.ndarray | None]:
        index = self.position
        self.position += 1
        if index >= self.count or index == 2:
            return False, None
        return True, colour(index)

    def get(self, prop: int) -> float:
        return 0.0

    def set(self, prop: int, value: float) -> bool:
        self.seeks.append(int(value))
        self.position = int(value)
        return True


def test_a_bad_frame_in_the_middle_is_reported_and_the_rest_follows(tmp_path: Path) -> None:
    capture = _FlakyCapture(5)
    frames = list(read_video_frames(capture, tmp_path / "v.mp4", 5, fps=10.0))
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert [f.error is None for f in frames] == [True, True, False, True, True]
    assert frames[2].error == f"{tmp_path / 'v.mp4'}: frame 2: cannot decode (corrupt or truncated)"
    assert capture.seeks == [3] and frames[4].timestamp_s == pytest.approx(0.4)


# --------------------------------------------------------------------------------------------------
# The overlay video writer
# --------------------------------------------------------------------------------------------------


def test_overlay_video_is_readable_back(tmp_path: Path) -> None:
    with OverlayVideoWriter(tmp_path / "out" / "overlay.mp4", fps=4.0) as writer:
        for i in range(5):
            writer.write(colour(i))
        writer.write(cv2.resize(colour(5), (W * 2, H * 2)))  # another size: resized to the first
    assert writer.path is not None and writer.path.is_file() and writer.frames == 6
    assert not list((tmp_path / "out").glob("*.part*"))
    read = read_video(writer.path)
    assert len(read) == 6 and read[0].shape == (H, W, 3)
    assert abs(float(read[3][:, :, 0].mean()) - 60) < 8


def test_overlay_video_abort_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), OverlayVideoWriter(tmp_path / "v.avi") as writer:
        writer.write(colour(0))
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# ROS bags (written here with rosbags' own writers)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ros1", [True, False], ids=["ros1", "ros2"])
def test_bag_frames_pair_depth_by_nearest_stamp(tmp_path: Path, ros1: bool) -> None:
    bag = write_bag(tmp_path / ("run.bag" if ros1 else "run"), ros1)
    source = open_source(bag, rgb_topic="/camera/color", depth_topic="/camera/depth", max_offset_s=0.02)
    assert isinstance(source, RosbagSource) and len(source) == 4
    frames = list(source)
    assert [f.id for f in frames] == [str(10**9 + s * 10**6) for s in (0, 100, 200, 300)]
    assert frames[1].timestamp_s == pytest.approx(1.1)
    good = [f for f in frames if f.error is None]
    assert [f.index for f in good] == [0, 1, 3]
    for frame in good:
        np.testing.assert_array_equal(frame.rgb, colour(frame.index))  # rgb8 -> BGR, lossless
        assert frame.depth.dtype == np.uint16 and int(frame.depth[0, 0]) == 1000 + frame.index
    assert "/camera/color message 2" in frames[2].error and "within 0.02 s" in frames[2].error
    assert all(f.intrinsics is None for f in frames)
    # without a depth topic every frame is good; a wide tolerance pairs frame 2 with a neighbour
    plain = list(RosbagSource(bag, rgb_topic="/camera/color", camera_info_topic="/camera/info"))
    assert all(f.error is None for f in plain)
    assert plain[0].intrinsics == Intrinsics(50.0, 52.0, 23.5, 15.5)
    wide = list(RosbagSource(bag, rgb_topic="/camera/color", depth_topic="/camera/depth", max_offset_s=0.2))
    assert all(f.error is None for f in wide)


def test_bag_topics_and_files_are_checked(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "run.bag", ros1=True)
    with pytest.raises(
        DataError, match=r"no topic '/nope' \(topics: /camera/color, /camera/depth, /camera/info\)"
    ):
        RosbagSource(bag, rgb_topic="/nope")
    with pytest.raises(ConfigError, match="rgb_topic"):
        open_source(bag)
    with pytest.raises(DataError, match="carries sensor_msgs/msg/Image, not CameraInfo"):
        RosbagSource(bag, rgb_topic="/camera/color", camera_info_topic="/camera/depth")
    with pytest.raises(DataError, match="carries sensor_msgs/msg/CameraInfo, not Image or CompressedImage"):
        RosbagSource(bag, rgb_topic="/camera/info")
    junk = tmp_path / "junk.bag"
    junk.write_bytes(b"#ROSBAG V2.0\n garbage")
    with pytest.raises(DataError, match="junk.bag: not a readable ROS bag"):
        RosbagSource(junk, rgb_topic="/camera/color")


def test_decode_image_messages_of_every_encoding() -> None:
    pytest.importorskip("rosbags")
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_HUMBLE)
    bgr = colour(3)
    cases = {
        "rgb8": (bgr[:, :, ::-1], bgr),
        "bgr8": (bgr, bgr),
        "mono8": (bgr[:, :, 0], bgr[:, :, 0]),
        "16UC1": (np.arange(H * W, dtype=np.uint16).reshape(H, W), None),
        "32FC1": (np.linspace(0, 5, H * W, dtype=np.float32).reshape(H, W), None),
    }
    for encoding, (array, expected) in cases.items():
        msg = image_msg(typestore, 1, array, encoding, ros1=False)
        image = decode_image_message(msg, "sensor_msgs/msg/Image", "t")
        np.testing.assert_array_equal(image, array if expected is None else expected)
        assert image.dtype == array.dtype
    compressed = compressed_msg(typestore, 1, bgr)
    np.testing.assert_array_equal(
        decode_image_message(compressed, "sensor_msgs/msg/CompressedImage", "t"), bgr
    )
    short = image_msg(typestore, 1, bgr, "bgr8", ros1=False)
    short.data = short.data[:-1]
    with pytest.raises(DataError, match="t: 48x32 bgr8 needs 32 rows"):
        decode_image_message(short, "sensor_msgs/msg/Image", "t")
    odd = image_msg(typestore, 1, bgr, "yuv422", ros1=False)
    with pytest.raises(DataError, match="unsupported encoding 'yuv422'"):
        decode_image_message(odd, "sensor_msgs/msg/Image", "t")


def test_frame_is_a_plain_record() -> None:
    frame = Frame(0, "a")
    assert frame.rgb is None and frame.error is None and frame.timestamp_s is None
