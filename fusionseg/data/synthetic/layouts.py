"""Scene layouts: a random indoor room or outdoor trail, built from meshes, decals and lights."""

from __future__ import annotations

import math

import numpy as np

from fusionseg.data.synthetic.materials import (
    _POSTERS,
    FURNITURE,
    GROUND,
    MARKING,
    MATERIAL_IDS,
    OBSTACLE,
    TRAIL,
    VEGETATION,
    VOID,
    WALL,
)
from fusionseg.data.synthetic.meshes import _blob, _box, _cylinder, _disk, _quad, _rot_z
from fusionseg.data.synthetic.scene import _RectDecal, _Scene, _StripDecal, _trail_centre_x


def _in_view(rng: np.random.Generator, near_m: float, far_m: float, half_angle_deg: float) -> np.ndarray:
    """Random ground point (x, y) ahead of the camera (which looks along +y from the origin)."""
    dist = rng.uniform(near_m, far_m)
    bearing = math.radians(rng.uniform(-half_angle_deg, half_angle_deg))
    return np.array([dist * math.sin(bearing), dist * math.cos(bearing)])


def _pick(rng: np.random.Generator, names: list[str]) -> str:
    return str(rng.choice(names))


_X, _Y, _UP = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])


def _build_indoor(rng: np.random.Generator, camouflage_fraction: float) -> _Scene:
    """A room: floor, four walls, ceiling (void), furniture (some camouflaged), bins, posters, tape."""
    scene = _Scene(ambient=0.45)
    width, length, height = rng.uniform(4, 10), rng.uniform(5, 12), rng.uniform(2.5, 3.2)
    x0 = -width * rng.uniform(0.3, 0.7)  # the camera stands at the origin, inside the room
    x1, y0 = x0 + width, -rng.uniform(0.5, 1.5)
    y1 = y0 + length
    floor_mat = _pick(rng, ["floor_wood", "floor_tiles", "carpet"])
    wall_mat = _pick(rng, ["wall_paint", "wallpaper"])
    floor = scene.add(
        _quad(np.array([[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y1, 0]])), GROUND, floor_mat
    )
    ceiling = np.array([[x0, y0, height], [x0, y1, height], [x1, y1, height], [x1, y0, height]])
    scene.add(_quad(ceiling), VOID, "ceiling")  # no ceiling class: void
    walls = {  # name: (start corner on the floor, unit direction along the wall, length)
        "far": (np.array([x0, y1, 0]), _X, width),
        "left": (np.array([x0, y0, 0]), _Y, length),
        "right": (np.array([x1, y1, 0]), -_Y, length),
        "back": (np.array([x1, y0, 0]), -_X, width),
    }
    wall_ids = {}
    for name, (start, along, span) in walls.items():
        end = start + along * span
        wall_ids[name] = scene.add(
            _quad(np.array([start, end, end + _UP * height, start + _UP * height])), WALL, wall_mat
        )

    for _ in range(int(rng.integers(3, 8))):  # furniture
        size = np.array([rng.uniform(0.4, 1.6), rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.3)])
        own = _pick(rng, ["furniture_wood", "plastic_red", "plastic_blue", "metal"])
        if rng.random() < 0.4:  # cabinet against the far wall, maybe textured like the wall
            xy, yaw = np.array([rng.uniform(x0 + 0.8, x1 - 0.8), y1 - size[1] / 2]), 0.0
            material = wall_mat if rng.random() < camouflage_fraction else own
        else:
            xy, yaw = _in_view(rng, 1.8, max(2.0, y1 - 0.8), 35), rng.uniform(0, np.pi)
            xy[0] = np.clip(xy[0], x0 + 0.8, x1 - 0.8)
            material = floor_mat if rng.random() < camouflage_fraction / 2 else own
        if material == floor_mat:
            size[2] = rng.uniform(0.15, 0.4)  # low platform, textured like the floor
        if material == own and rng.random() < 0.3:  # table: top slab on four legs
            top = size[2]
            scene.add(
                _box(np.array([*xy, top - 0.025]), np.array([size[0], size[1], 0.05]), yaw), FURNITURE, own
            )
            for sx, sy in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
                offset = _rot_z(yaw) @ np.array([sx * (size[0] / 2 - 0.04), sy * (size[1] / 2 - 0.04), 0.0])
                leg = np.array([xy[0] + offset[0], xy[1] + offset[1], (top - 0.05) / 2])
                scene.add(_box(leg, np.array([0.05, 0.05, top - 0.05])), FURNITURE, own)
        else:
            scene.add(_box(np.array([*xy, size[2] / 2]), size, yaw), FURNITURE, material)

    for _ in range(int(rng.integers(0, 3))):  # obstacles: bins
        xy = _in_view(rng, 1.5, max(2.0, y1 - 0.5), 35)
        xy[0] = np.clip(xy[0], x0 + 0.4, x1 - 0.4)
        bin_mesh = _cylinder(np.array([*xy, 0.0]), rng.uniform(0.12, 0.3), rng.uniform(0.4, 1.0))
        scene.add(bin_mesh, OBSTACLE, _pick(rng, ["metal", "green_paint", "plastic_red"]))

    for _ in range(int(rng.integers(1, 5))):  # posters: flat rectangles on the walls (RGB only)
        name = _pick(rng, ["far", "far", "left", "right"])
        start, along, span = walls[name]
        half_u, half_v = rng.uniform(0.2, 0.7), rng.uniform(0.25, 0.6)
        centre = start + along * rng.uniform(half_u + 0.1, span - half_u - 0.1) + _UP * rng.uniform(1.0, 2.0)
        poster = MATERIAL_IDS[_pick(rng, list(_POSTERS))]
        scene.decals.append(_RectDecal(wall_ids[name], centre, along, _UP, half_u, half_v, MARKING, poster))
    for _ in range(int(rng.integers(0, 3))):  # tape lines on the floor
        centre = np.array([*_in_view(rng, 1.5, max(2.0, y1 - 1.0), 30), 0.0])
        yaw = rng.uniform(0, np.pi)
        axis_u = np.array([math.cos(yaw), math.sin(yaw), 0.0])
        half_u, half_v = rng.uniform(0.4, 1.5), rng.uniform(0.03, 0.08)
        tape = MATERIAL_IDS[_pick(rng, ["paint_yellow", "paint_white"])]
        scene.decals.append(
            _RectDecal(floor, centre, axis_u, np.cross(_UP, axis_u), half_u, half_v, MARKING, tape)
        )
    scene.lamp_pos = np.array(
        [rng.uniform(x0 + 1, x1 - 1), rng.uniform(1.0, max(1.5, y1 - 1)), height - 0.05]
    )
    return scene


def _build_outdoor(rng: np.random.Generator, camouflage_fraction: float) -> _Scene:
    """Ground with a trail, bushes and trees, rocks and green posts, markings, maybe a building; sky."""
    scene = _Scene(ambient=0.35)
    ground_mat = _pick(rng, ["grass", "grass", "soil"])
    # a disk, so z-depth stays below 60 m (fits 16-bit millimetres); beyond it is sky
    ground = scene.add(_disk(np.zeros(3), 60.0), GROUND, ground_mat)
    trail = (
        rng.uniform(-0.15, 0.15),
        rng.uniform(0.5, 3.0),
        rng.uniform(4.0, 12.0),
        rng.uniform(0, 2 * np.pi),
    )
    half_width = rng.uniform(0.6, 1.6)
    scene.decals.append(
        _StripDecal(ground, half_width, trail, TRAIL, MATERIAL_IDS["gravel"], affects_nir=True)
    )
    if rng.random() < 0.5:  # dashed centre line painted on the trail
        paint = MATERIAL_IDS[_pick(rng, ["paint_white", "paint_yellow"])]
        dash_m = rng.uniform(1.5, 3.0)
        scene.decals.append(_StripDecal(ground, 0.06, trail, MARKING, paint, False, dash_m, 0.5))

    def off_trail(near_m: float, far_m: float, clearance_m: float) -> np.ndarray:
        for _ in range(20):
            xy = _in_view(rng, near_m, far_m, 45)
            if abs(xy[0] - _trail_centre_x(xy[1], trail)) > half_width + clearance_m:
                return xy
        return xy + np.array([half_width + clearance_m + 1.0, 0.0])

    for _ in range(int(rng.integers(5, 16))):  # bushes
        radii = np.array([rng.uniform(0.4, 1.2), rng.uniform(0.4, 1.2), rng.uniform(0.3, 0.9)])
        xy = off_trail(3.0, 35.0, radii[0])
        scene.add(_blob(np.array([*xy, radii[2] * 0.7]), radii, rng, roughness=0.15), VEGETATION, "leaves")
    for _ in range(int(rng.integers(2, 9))):  # trees: trunk and crown
        xy = off_trail(5.0, 45.0, 1.0)
        trunk_m, crown_m = rng.uniform(1.5, 4.0), rng.uniform(1.0, 2.5)
        trunk = _cylinder(np.array([*xy, 0.0]), rng.uniform(0.1, 0.3), trunk_m + crown_m / 2, 10)
        scene.add(trunk, VEGETATION, "bark")
        radii = np.array([crown_m, crown_m, crown_m * rng.uniform(0.8, 1.4)])
        crown = _blob(np.array([*xy, trunk_m + radii[2] * 0.8]), radii, rng, roughness=0.2)
        scene.add(crown, VEGETATION, "leaves")
    for _ in range(int(rng.integers(2, 6))):  # green posts: RGB like leaves, dark in NIR
        xy = off_trail(2.5, 25.0, 0.2) if rng.random() < 0.7 else _in_view(rng, 3.0, 20.0, 25)
        post = _cylinder(np.array([*xy, 0.0]), rng.uniform(0.05, 0.15), rng.uniform(0.8, 1.6), 12)
        scene.add(post, OBSTACLE, "green_paint")
    for _ in range(int(rng.integers(1, 6))):  # rocks, some camouflaged like the ground
        radii = np.array([rng.uniform(0.2, 0.7), rng.uniform(0.2, 0.7), rng.uniform(0.15, 0.45)])
        xy = _in_view(rng, 2.5, 25.0, 35)
        material = ground_mat if rng.random() < camouflage_fraction else "rock"
        rock = _blob(np.array([*xy, radii[2] * 0.4]), radii, rng, roughness=0.25, n_lat=8, n_lon=12)
        scene.add(rock, OBSTACLE, material)
    for _ in range(int(rng.integers(0, 3))):  # painted patches on the ground
        centre = np.array([*off_trail(2.0, 15.0, 0.3), 0.0])
        half_u, half_v = rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.6)
        paint = MATERIAL_IDS[_pick(rng, ["paint_white", "paint_yellow"])]
        scene.decals.append(_RectDecal(ground, centre, _X, _Y, half_u, half_v, MARKING, paint))
    if rng.random() < 0.4:  # a building beside the trail, posters on its front
        front_y, width, depth, height = (
            rng.uniform(15, 40),
            rng.uniform(6, 20),
            rng.uniform(4, 10),
            rng.uniform(3, 9),
        )
        centre_x = rng.choice([-1.0, 1.0]) * rng.uniform(half_width + width / 2 + 3.0, width / 2 + 15.0)
        size = np.array([width, depth, height])
        building = scene.add(_box(np.array([centre_x, front_y + depth / 2, height / 2]), size), WALL, "brick")
        for _ in range(int(rng.integers(0, 3))):
            half_u, half_v = rng.uniform(0.4, 1.2), rng.uniform(0.4, 1.0)
            x = centre_x + rng.uniform(-width / 2 + half_u, width / 2 - half_u)
            poster = MATERIAL_IDS[_pick(rng, list(_POSTERS))]
            centre = np.array([x, front_y, rng.uniform(1.2, 2.2)])
            scene.decals.append(_RectDecal(building, centre, _X, _UP, half_u, half_v, MARKING, poster))
    elevation, azimuth = math.radians(rng.uniform(25, 70)), rng.uniform(0, 2 * np.pi)
    scene.sun_dir = np.array(
        [
            math.cos(elevation) * math.cos(azimuth),
            math.cos(elevation) * math.sin(azimuth),
            math.sin(elevation),
        ]
    )
    return scene
