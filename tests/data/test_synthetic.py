"""Synthetic scene generator: analytic geometry, per-modality cues, determinism and the dataset files."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from analytic_scenes import render_analytic_frame

from fusionseg.config import SyntheticConfig
from fusionseg.data.catalog import SYNTHETIC
from fusionseg.data.io import read_depth, read_gray, read_image, read_label
from fusionseg.data.listfile import read_list
from fusionseg.data.synthetic import (
    COLUMNS,
    GROUND,
    MATERIAL_IDS,
    SKY,
    WALL,
    camera_rotation,
    check_config,
    frame_intrinsics,
    frame_params,
    generate_dataset,
    gravity_in_camera,
    render_frame,
    simulate_kinect_depth,
)
from fusionseg.errors import ConfigError, DataError

SMALL = SyntheticConfig(num_frames=8, height_px=96, width_px=128, workers=1)


def pixel_grid(height_px: int, width_px: int) -> tuple[np.ndarray, np.ndarray]:
    v, u = np.mgrid[0:height_px, 0:width_px].astype(np.float64)
    return u, v


# ---------------------------------------------------------------------------------------------------
# analytic geometry
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("distance_m", [0.7, 3.0, 12.5])
def test_wall_depth_equals_distance_everywhere(distance_m: float) -> None:
    frame = render_analytic_frame("wall", distance_m=distance_m)
    assert frame.depth_m.shape == (240, 320) and frame.depth_m.dtype == np.float32
    np.testing.assert_allclose(frame.depth_m, distance_m, atol=1e-3)
    assert np.all(frame.label == WALL)


def test_default_analytic_intrinsics() -> None:
    k = render_analytic_frame("wall").intrinsics
    assert (k.fx, k.fy, k.cx, k.cy) == (0.9 * 320, 0.9 * 320, 159.5, 119.5)


@pytest.mark.parametrize("pitch_deg", [0.0, 12.0, 35.0])
def test_floor_depth_matches_pitch_formula(pitch_deg: float) -> None:
    height_m = 1.3
    frame = render_analytic_frame("floor", camera_height_m=height_m, pitch_deg=pitch_deg)
    k = frame.intrinsics
    _, v = pixel_grid(*frame.depth_m.shape)
    # ray ((u-cx)/fx, (v-cy)/fy, 1) drops sin(p) + cos(p)(v-cy)/fy metres per unit of z-depth
    p = math.radians(pitch_deg)
    drop = math.sin(p) + math.cos(p) * (v - k.cy) / k.fy
    with np.errstate(divide="ignore"):
        expected = np.where(drop > 0, height_m / drop, np.inf)
    near = expected < 50.0  # float32 rays: 1 mm is about 6 ppm of 190 m
    assert near.sum() > 1000
    np.testing.assert_allclose(frame.depth_m[near], expected[near], atol=1e-3)
    assert np.all(frame.label[near] == GROUND)
    up = drop <= 0  # rays at or above the horizon hit nothing: depth 0, sky
    assert np.all(frame.depth_m[up] == 0) and np.all(frame.label[up] == SKY)


def test_floor_with_roll_matches_gravity_formula() -> None:
    height_m = 0.8
    frame = render_analytic_frame("floor", camera_height_m=height_m, pitch_deg=9.0, roll_deg=-11.0)
    k = frame.intrinsics
    u, v = pixel_grid(*frame.depth_m.shape)
    g = frame.gravity_cam
    drop = g[0] * (u - k.cx) / k.fx + g[1] * (v - k.cy) / k.fy + g[2]
    with np.errstate(divide="ignore"):
        expected = np.where(drop > 0, height_m / drop, np.inf)
    near = expected < 50.0
    np.testing.assert_allclose(frame.depth_m[near], expected[near], atol=1e-3)
    # negative roll puts the camera's left side down: gravity points left, so the floor reaches
    # higher up the image on the left than on the right
    assert g[0] < 0
    first_floor_row_left = np.argmax(frame.depth_m[:, 0] > 0)
    first_floor_row_right = np.argmax(frame.depth_m[:, -1] > 0)
    assert first_floor_row_left < first_floor_row_right


def test_gravity_direction_conventions() -> None:
    p, r = math.radians(20.0), math.radians(10.0)
    np.testing.assert_allclose(gravity_in_camera(camera_rotation(0.0, 0.0)), [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(gravity_in_camera(camera_rotation(20.0, 0.0)), [0, math.cos(p), math.sin(p)])
    np.testing.assert_allclose(
        gravity_in_camera(camera_rotation(0.0, 10.0)), [math.sin(r), math.cos(r), 0], atol=1e-12
    )
    p, r = math.radians(-7.0), math.radians(13.0)
    np.testing.assert_allclose(
        gravity_in_camera(camera_rotation(-7.0, 13.0)),
        [math.cos(p) * math.sin(r), math.cos(p) * math.cos(r), math.sin(p)],
        atol=1e-12,
    )
    # yaw turns about gravity, so gravity in the camera frame does not change
    np.testing.assert_allclose(
        gravity_in_camera(camera_rotation(5.0, -3.0, 40.0)), gravity_in_camera(camera_rotation(5.0, -3.0))
    )


def test_floor_and_wall_depth_and_labels() -> None:
    height_m, distance_m = 1.5, 4.0
    frame = render_analytic_frame("floor_and_wall", camera_height_m=height_m, distance_m=distance_m)
    k = frame.intrinsics
    _, v = pixel_grid(*frame.depth_m.shape)
    drop = (v - k.cy) / k.fy
    with np.errstate(divide="ignore"):
        floor_m = np.where(drop > 0, height_m / drop, np.inf)
    expected = np.minimum(floor_m, distance_m)  # level camera: the wall is fronto-parallel
    np.testing.assert_allclose(frame.depth_m, expected, atol=1e-3)
    clear = np.abs(floor_m - distance_m) > 0.05  # away from the floor-wall edge
    expected_label = np.where(floor_m < distance_m, GROUND, WALL)
    np.testing.assert_array_equal(frame.label[clear], expected_label[clear])
    assert {GROUND, WALL} <= set(np.unique(frame.label).tolist())


def test_analytic_frame_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="kind"):
        render_analytic_frame("ceiling")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="camera_height_m"):
        render_analytic_frame("floor", camera_height_m=0.0)


# ---------------------------------------------------------------------------------------------------
# rendered frames: the per-modality cues
# ---------------------------------------------------------------------------------------------------


def test_render_frame_arrays() -> None:
    frame = render_frame(0, SMALL)
    h, w = SMALL.height_px, SMALL.width_px
    assert frame["rgb"].shape == (h, w, 3) and frame["rgb"].dtype == np.uint8
    for key in ("depth", "depth_raw", "depth_sparse"):
        assert frame[key].shape == (h, w) and frame[key].dtype == np.float32
        assert np.all(np.isfinite(frame[key])) and frame[key].min() >= 0
    assert frame["nir"].shape == (h, w) and frame["nir"].dtype == np.uint8
    assert frame["label"].dtype == np.uint8 and frame["label"].max() < len(SYNTHETIC.classes)


@pytest.mark.parametrize("layout", ["indoor", "outdoor"])
def test_depth_is_missing_only_for_sky(layout: str) -> None:
    for index in range(3):
        frame = render_frame(index, SMALL, layout=layout)
        np.testing.assert_array_equal(frame["depth"] == 0, frame["label"] == SKY)
        assert frame["depth"].max() < 65.0  # fits 16-bit millimetres


def test_raw_depth_has_holes_and_bounded_noise() -> None:
    for index in range(4):
        frame = render_frame(index, SMALL)
        dense, raw = frame["depth"], frame["depth_raw"]
        surface = dense > 0
        holes = surface & (raw == 0)
        assert holes.sum() > 0.01 * surface.sum()
        assert np.all(raw[dense == 0] == 0)
        assert np.all(raw[dense > SMALL.raw_max_range_m] == 0)
        valid = raw > 0
        sigma = SMALL.raw_noise_per_m * dense[valid] ** 2
        assert np.all(np.abs(raw[valid] - dense[valid]) <= 6 * sigma + 1e-6)


def test_kinect_simulation_removes_edges_and_far_returns() -> None:
    depth = np.full((64, 96), 1.0, np.float32)
    depth[:, 48:] = 3.0  # a step edge
    depth[:8] = 20.0  # beyond range
    before = depth.copy()
    raw = simulate_kinect_depth(
        depth, np.random.default_rng(0), max_range_m=10.0, noise_per_m=0.001, dropout_fraction=0.0
    )
    np.testing.assert_array_equal(depth, before)  # input untouched
    assert np.all(raw[:8] == 0)
    assert np.all(raw[10:, 46:50] == 0)  # discontinuity
    assert np.all(raw[12:, :40] > 0) and np.all(raw[12:, 56:] > 0)


def test_sparse_depth_density_and_values() -> None:
    for cfg in (SMALL, dataclasses.replace(SMALL, height_px=192, width_px=256)):
        for index in range(3):
            frame = render_frame(index, cfg)
            surface = frame["depth"] > 0
            sparse = frame["depth_sparse"] > 0
            density = sparse.sum() / surface.sum()
            assert 0.02 <= density <= 0.06, density
            assert sparse.mean() <= 0.06
            assert not np.any(sparse & ~surface)
            rel = np.abs(frame["depth_sparse"][sparse] - frame["depth"][sparse]) / frame["depth"][sparse]
            assert np.median(rel) < 0.02


def test_nir_separates_vegetation_from_green_posts() -> None:
    leaves, paint = MATERIAL_IDS["leaves"], MATERIAL_IDS["green_paint"]
    nir: dict[int, list[np.ndarray]] = {leaves: [], paint: []}
    rgb: dict[int, list[np.ndarray]] = {leaves: [], paint: []}
    for index in range(4):
        frame = render_frame(index, SMALL, layout="outdoor", condition="clear")
        for mat in (leaves, paint):
            nir[mat].append(frame["nir"][frame["material"] == mat])
            rgb[mat].append(frame["rgb"][frame["material"] == mat])
    nir_leaves, nir_paint = (np.concatenate(nir[m]).astype(float) for m in (leaves, paint))
    rgb_leaves, rgb_paint = (np.concatenate(rgb[m]).astype(float) for m in (leaves, paint))
    assert nir_leaves.size > 100 and nir_paint.size > 20
    assert nir_leaves.mean() > nir_paint.mean() + 40  # NIR tells them apart ...
    assert np.all(np.abs(rgb_leaves.mean(0) - rgb_paint.mean(0)) < 20)  # ... RGB hardly does


def test_dark_and_fog_degrade_rgb_only() -> None:
    for index in range(3):
        clear = render_frame(index, SMALL, condition="clear")
        dark = render_frame(index, SMALL, condition="dark")
        fog = render_frame(index, SMALL, condition="fog")
        assert dark["rgb"].mean() < 0.6 * clear["rgb"].mean()
        assert fog["rgb"].std() < clear["rgb"].std()
        for other in (dark, fog):
            for key in ("depth", "depth_raw", "depth_sparse", "label"):
                np.testing.assert_array_equal(other[key], clear[key])
        np.testing.assert_array_equal(dark["nir"], clear["nir"])  # NIR has its own illuminator


def test_some_objects_are_camouflaged() -> None:
    furniture, obstacle = SYNTHETIC.classes.index("furniture"), SYNTHETIC.classes.index("obstacle")
    camouflaged = 0
    for index in range(10):
        frame = render_frame(index, SMALL)
        label, material = frame["label"], frame["material"]
        objects = np.isin(label, [furniture, obstacle])
        background = np.isin(label, [GROUND, WALL])
        camouflaged += bool(set(np.unique(material[objects])) & set(np.unique(material[background])))
    assert camouflaged >= 2


def test_ground_markings_have_zero_thickness() -> None:
    marking = SYNTHETIC.classes.index("marking")
    on_ground = 0
    for index in range(6):
        frame = render_frame(index, SMALL, layout="outdoor")
        params = frame_params(index, SMALL, layout="outdoor")
        k = frame_intrinsics(SMALL)
        v, u = np.nonzero(frame["label"] == marking)
        g = np.array(params.gravity_cam)
        drop = g[0] * (u - k.cx) / k.fx + g[1] * (v - k.cy) / k.fy + g[2]  # metres down per metre of depth
        height_m = params.camera_height_m - frame["depth"][v, u] * drop  # of the marked point
        flat = np.abs(height_m) < 2e-3
        on_ground += int(flat.sum())
        # anything not lying on the ground is a poster on a building, well above it
        assert np.all(flat | (height_m > 0.15))
    assert on_ground > 20


def test_frame_params_are_reproducible_and_recorded() -> None:
    a, b = frame_params(5, SMALL), frame_params(5, SMALL)
    assert a == b
    assert a.layout in ("indoor", "outdoor") and a.condition in ("clear", "dark", "fog")
    np.testing.assert_allclose(np.linalg.norm(a.gravity_cam), 1.0, atol=1e-6)
    expected = gravity_in_camera(camera_rotation(a.pitch_deg, a.roll_deg, a.yaw_deg))
    np.testing.assert_allclose(a.gravity_cam, expected, atol=1e-6)
    assert frame_params(5, dataclasses.replace(SMALL, seed=1)) != a
    # overriding the condition leaves the pose alone
    forced = frame_params(5, SMALL, condition="fog")
    assert (forced.pitch_deg, forced.roll_deg, forced.condition) == (a.pitch_deg, a.roll_deg, "fog")


@pytest.mark.parametrize(
    ("key", "value"),
    [("num_frames", 0), ("height_px", 4), ("seed", -1), ("dark_fraction", 1.5), ("sparse_density", 0.0)],
)
def test_check_config_names_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"synthetic.{key}"):
        check_config(dataclasses.replace(SMALL, **{key: value}))


# ---------------------------------------------------------------------------------------------------
# dataset files
# ---------------------------------------------------------------------------------------------------


def png_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_generate_dataset_files(tmp_path: Path) -> None:
    summary = generate_dataset(tmp_path, SMALL)
    assert (summary.num_frames, summary.num_rendered, summary.num_skipped) == (8, 8, 0)
    assert summary.num_train + summary.num_val == 8 and summary.num_val >= 1
    for split in ("train", "val"):
        lst = read_list(tmp_path / f"{split}.txt")  # checks that every listed file exists
        assert lst.columns == COLUMNS
        assert len(lst) == getattr(summary, f"num_{split}")
        assert (tmp_path / f"{split}.txt").read_text().splitlines()[0] == "# columns: " + " ".join(COLUMNS)
    sample = read_list(tmp_path / "train.txt").samples[0]
    assert read_image(sample.files["rgb"]).shape == (96, 128, 3)
    assert read_gray(sample.files["nir"]).shape == (96, 128)
    assert read_label(sample.files["label"]).max() < len(SYNTHETIC.classes)
    depth = read_depth(sample.files["depth"], depth_scale_m="mm")
    np.testing.assert_allclose(depth, render_frame(int(sample.id), SMALL)["depth"], atol=5e-4)

    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["classes"] == list(SYNTHETIC.classes)
    assert meta["palette"] == [list(c) for c in SYNTHETIC.palette]
    assert meta["depth_unit"] == "mm" and meta["depth_scale_m"] == 0.001
    assert meta["columns"] == list(COLUMNS)
    assert meta["image_size"] == {"height_px": 96, "width_px": 128}
    assert set(meta["intrinsics"]) == {"fx", "fy", "cx", "cy"} and meta["intrinsics"]["cx"] == 63.5
    assert meta["generator"]["name"] and isinstance(meta["generator"]["version"], int)
    assert meta["seed"] == SMALL.seed and meta["complete"] is True
    assert len(meta["frames"]) == 8
    for frame in meta["frames"]:
        assert {
            "split",
            "layout",
            "condition",
            "camera_height_m",
            "pitch_deg",
            "roll_deg",
            "gravity_cam",
        } <= set(frame)
        assert (tmp_path / frame["split"] / "rgb" / f"{frame['id']}.png").is_file()


def test_one_worker_is_one_thread_and_restores_the_settings(tmp_path: Path, monkeypatch) -> None:
    """workers=1: OpenCV, torch and the raycaster on one thread in this process (the unit of the
    scaling figures); the caller's thread settings return afterwards."""
    import cv2
    import torch

    import fusionseg.data.synthetic.writer as writer

    seen = []
    real = writer.render_frame

    def spy(index, cfg, *, nthreads):
        seen.append((cv2.getNumThreads(), torch.get_num_threads(), nthreads))
        return real(index, cfg, nthreads=nthreads)

    monkeypatch.setattr(writer, "render_frame", spy)
    before = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(2)
    torch.set_num_threads(2)
    try:
        generate_dataset(tmp_path / "one", dataclasses.replace(SMALL, num_frames=2, workers=1))
        assert seen == [(1, 1, 1), (1, 1, 1)]
        assert cv2.getNumThreads() == 2 and torch.get_num_threads() == 2
    finally:
        cv2.setNumThreads(before[0])
        torch.set_num_threads(before[1])


def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path) -> None:
    cfg = dataclasses.replace(SMALL, num_frames=4)
    generate_dataset(tmp_path / "one", dataclasses.replace(cfg, workers=1))
    generate_dataset(tmp_path / "two", dataclasses.replace(cfg, workers=2))
    generate_dataset(tmp_path / "other", dataclasses.replace(cfg, seed=7))
    one, two, other = (png_bytes(tmp_path / name) for name in ("one", "two", "other"))
    assert len(one) == 4 * len(COLUMNS)
    assert one == two
    assert (tmp_path / "one" / "train.txt").read_text() == (tmp_path / "two" / "train.txt").read_text()
    shared = set(one) & set(other)
    assert any(one[name] != other[name] for name in shared if "/rgb/" in name)


def test_generation_resumes_and_refuses_other_settings(tmp_path: Path) -> None:
    cfg = dataclasses.replace(SMALL, num_frames=3)
    generate_dataset(tmp_path, cfg)
    first = png_bytes(tmp_path)
    (tmp_path / "train" / "nir" / "000001.png").unlink()
    summary = generate_dataset(tmp_path, dataclasses.replace(cfg, num_frames=5))
    assert (summary.num_rendered, summary.num_skipped) == (3, 2)  # frame 1 again, frames 3 and 4
    after = png_bytes(tmp_path)
    assert all(after[name] == data for name, data in first.items())
    with pytest.raises(DataError, match="synthetic.seed"):
        generate_dataset(tmp_path, dataclasses.replace(cfg, seed=3))


def test_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="not writable"):
        generate_dataset(blocker / "out", SMALL)
