"""Frame sources for prediction on streams: image sequences, video files and ROS 1/2 bags.

    for frame in open_source("drive.mp4"):
        if frame.error is None:
            labels = seg.predict({"rgb": frame.rgb})

Frames carry arrays as `cv2.imread` returns them (BGR uint8 colour; uint16 or float32 depth). ROS bags
need the optional `rosbags` package (`pip install 'fusionseg[ros]'`), imported only when a bag is read.
"""

from __future__ import annotations

from pathlib import Path

from fusionseg.data.sources.frames import (
    VIDEO_SUFFIXES,
    Frame,
    FrameSource,
    ImageSequence,
    VideoSource,
    natural_key,
)
from fusionseg.data.sources.rosbag import RosbagSource
from fusionseg.data.sources.video_writer import OverlayVideoWriter
from fusionseg.errors import ConfigError

__all__ = [
    "Frame",
    "FrameSource",
    "ImageSequence",
    "OverlayVideoWriter",
    "RosbagSource",
    "VideoSource",
    "is_rosbag",
    "is_stream",
    "natural_key",
    "open_source",
]


def is_rosbag(path: str | Path) -> bool:
    """A ROS 1 ``.bag`` file, or a ROS 2 bag folder (metadata.yaml, or .db3/.mcap files)."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() in (".bag", ".db3", ".mcap")
    return path.is_dir() and (
        (path / "metadata.yaml").is_file() or any(path.glob("*.db3")) or any(path.glob("*.mcap"))
    )


def is_stream(path: str | Path) -> bool:
    """A video file or a ROS bag: inputs `fusionseg predict` reads as a stream of frames."""
    return is_rosbag(path) or Path(path).suffix.lower() in VIDEO_SUFFIXES


def open_source(
    spec: str | Path,
    *,
    depth: str | Path | None = None,
    rgb_topic: str | None = None,
    depth_topic: str | None = None,
    max_offset_s: float = 0.02,
    camera_info_topic: str | None = None,
) -> FrameSource:
    """The source `spec` names: a ROS bag, a video file, or a folder / glob of images.

    Args:
        spec: ROS 1 .bag file or ROS 2 bag folder; video file (VIDEO_SUFFIXES); image folder or glob.
        depth: For image sequences, a folder or glob of depth images paired by file stem.
        rgb_topic, depth_topic, max_offset_s, camera_info_topic: For bags (see `RosbagSource`);
            `rgb_topic` is required.

    Raises:
        ConfigError: a bag without `rgb_topic`, topics for a non-bag, or `depth` for a video.
        DataError: the source cannot be opened (see each source).
    """
    path = Path(spec)
    if is_rosbag(path):
        if rgb_topic is None:
            raise ConfigError(f"{path}: a ROS bag needs `rgb_topic` (the colour image topic)")
        return RosbagSource(
            path,
            rgb_topic=rgb_topic,
            depth_topic=depth_topic,
            max_offset_s=max_offset_s,
            camera_info_topic=camera_info_topic,
        )
    if rgb_topic is not None or depth_topic is not None or camera_info_topic is not None:
        raise ConfigError(f"{path}: `rgb_topic`/`depth_topic`/`camera_info_topic` apply to ROS bags only")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        if depth is not None:
            raise ConfigError(f"{path}: `depth` images pair with image sequences, not with a video")
        return VideoSource(path)
    return ImageSequence(spec, depth=depth)
