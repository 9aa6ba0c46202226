"""Procedural multimodal scenes: RGB, dense/raw/sparse depth, NIR and labels from one raycaster.

Each frame is a random indoor-like room or outdoor-like trail scene built from triangle meshes and
rendered with open3d's `RaycastingScene` through a pinhole camera whose intrinsics, height, pitch, roll
and gravity direction are known exactly. The scenes are designed so that no single modality suffices:

* camouflaged objects share the texture of the wall or ground behind them (depth separates them);
* posters and ground markings are flat decals on a surface (only RGB shows them);
* dark and foggy frames degrade RGB while depth and NIR stay intact;
* green painted posts look like vegetation in RGB but are dark in NIR.

Frames are deterministic for (seed, index): per-frame random streams come from
`np.random.SeedSequence(seed, spawn_key=(index,))`, so results do not depend on the number of workers.

Coordinate frames. World: x east, y north, z up; gravity points along -z. Camera: x right, y down,
z forward (OpenCV). Depth is z-depth in metres (0 = the ray hits nothing). Positive pitch looks down,
positive roll turns the camera's right side down.

Modules, one concern each: `materials` (classes, materials, textures), `camera` (intrinsics, pose, rays),
`meshes` (triangle meshes), `scene` (geometry, decals, lights of one frame), `params` (what is drawn
per frame, the settings check), `layouts` (indoor rooms and outdoor trails), `raycast` (hits and label
maps), `shading` (textures, light, sky, exposure), `sensors` (Kinect-like and LiDAR-like depth),
`render` (`render_frame`) and `writer` (`generate_dataset`, the resumable parallel job).
"""

from fusionseg.data.synthetic.camera import (
    GRAVITY_WORLD,
    camera_rotation,
    default_intrinsics,
    gravity_in_camera,
)
from fusionseg.data.synthetic.materials import (
    FURNITURE,
    GROUND,
    MARKING,
    MATERIAL_IDS,
    MATERIALS,
    NO_MATERIAL,
    OBSTACLE,
    SKY,
    TRAIL,
    VEGETATION,
    VOID,
    WALL,
    Material,
)
from fusionseg.data.synthetic.params import (
    CONDITIONS,
    LAYOUTS,
    FrameParams,
    check_config,
    frame_intrinsics,
    frame_params,
)
from fusionseg.data.synthetic.render import render_frame
from fusionseg.data.synthetic.sensors import (
    LIDAR_MAX_RANGE_M,
    LIDAR_RANGE_NOISE_M,
    lidar_scan_mask,
    simulate_kinect_depth,
)
from fusionseg.data.synthetic.writer import (
    COLUMNS,
    DEPTH_SCALE_M,
    GENERATOR_NAME,
    GENERATOR_VERSION,
    SPLITS,
    SyntheticSummary,
    frame_paths,
    generate_dataset,
)

__all__ = [
    "COLUMNS",
    "CONDITIONS",
    "DEPTH_SCALE_M",
    "FURNITURE",
    "GENERATOR_NAME",
    "GENERATOR_VERSION",
    "GRAVITY_WORLD",
    "GROUND",
    "LAYOUTS",
    "LIDAR_MAX_RANGE_M",
    "LIDAR_RANGE_NOISE_M",
    "MARKING",
    "MATERIALS",
    "MATERIAL_IDS",
    "NO_MATERIAL",
    "OBSTACLE",
    "SKY",
    "SPLITS",
    "TRAIL",
    "VEGETATION",
    "VOID",
    "WALL",
    "FrameParams",
    "Material",
    "SyntheticSummary",
    "camera_rotation",
    "check_config",
    "default_intrinsics",
    "frame_intrinsics",
    "frame_params",
    "frame_paths",
    "generate_dataset",
    "gravity_in_camera",
    "lidar_scan_mask",
    "render_frame",
    "simulate_kinect_depth",
]
