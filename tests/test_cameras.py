"""Blender camera values → K, rays, OpenCV poses, relative poses; and cameras.json validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import camera_dict, euler_matrix

from engine.cameras import (
    BlenderCamera,
    load_cameras,
    relative_pose,
    relative_poses_12,
    save_cameras,
)
from engine.errors import BadInput


def make(**kw) -> BlenderCamera:
    return BlenderCamera.from_dict(camera_dict("cam", **kw))


@pytest.mark.parametrize(
    ("fit", "res", "sensor", "expected_fx"),
    [
        # AUTO fits the larger dimension but always with sensor_width.
        ("AUTO", (200, 100), (36, 24), 50 / 36 * 200),
        ("AUTO", (100, 200), (36, 24), 50 / 36 * 200),
        ("HORIZONTAL", (100, 200), (36, 24), 50 / 36 * 100),
        ("VERTICAL", (200, 100), (36, 24), 50 / 24 * 100),
    ],
)
def test_focal_length_follows_blender_sensor_fit(fit, res, sensor, expected_fx):
    cam = make(
        sensor_fit=fit,
        resolution_x=res[0],
        resolution_y=res[1],
        sensor_width=sensor[0],
        sensor_height=sensor[1],
    )
    k = cam.intrinsics()
    assert k[0, 0] == pytest.approx(expected_fx)
    assert k[1, 1] == pytest.approx(expected_fx)
    assert k[0, 2] == pytest.approx(res[0] / 2)
    assert k[1, 2] == pytest.approx(res[1] / 2)


def test_shift_moves_principal_point_in_fitted_units():
    cam = make(shift_x=0.1, shift_y=0.2, resolution_x=200, resolution_y=100)
    k = cam.intrinsics()
    # Fitted dimension is the width (200 px): +shift_x moves the view right, so the
    # principal point moves left; +shift_y moves the view up, principal point down.
    assert k[0, 2] == pytest.approx(100 - 20)
    assert k[1, 2] == pytest.approx(50 + 40)


def test_pixel_aspect_scales_vertical_focal_length():
    cam = make(pixel_aspect_x=1.0, pixel_aspect_y=2.0, resolution_x=100, resolution_y=100)
    k = cam.intrinsics()
    assert k[1, 1] == pytest.approx(k[0, 0] / 2)


def test_identity_camera_looks_down_minus_z_with_y_up():
    cam = make(rotation=(0, 0, 0), resolution_x=3, resolution_y=3)
    rays = cam.pixel_rays()
    np.testing.assert_allclose(rays[1, 1], [0, 0, -1], atol=1e-12)
    assert rays[0, 1, 1] > 0  # top row looks up (+Y of the camera)
    assert rays[1, 2, 0] > 0  # right column looks right (+X)
    np.testing.assert_allclose(cam.view_direction(), [0, 0, -1], atol=1e-12)


def test_rotation_90_0_minus90_looks_along_plus_x():
    cam = make(rotation=(90, 0, -90))
    np.testing.assert_allclose(cam.view_direction(), [1, 0, 0], atol=1e-12)
    c2w = cam.camera_to_world_opencv()
    np.testing.assert_allclose(c2w[:3, 2], [1, 0, 0], atol=1e-12)  # OpenCV +z forward
    np.testing.assert_allclose(c2w[:3, 1], [0, 0, -1], atol=1e-12)  # OpenCV +y down


def test_rays_project_back_to_their_pixels():
    cam = make(rotation=(70, 10, 30), shift_x=0.05, shift_y=-0.1, pixel_aspect_y=1.3)
    rays = cam.pixel_rays()
    pixels, in_front = cam.project(rays)
    assert in_front.all()
    cols = np.arange(cam.width) + 0.5
    rows = np.arange(cam.height) + 0.5
    np.testing.assert_allclose(pixels[..., 0], np.broadcast_to(cols, rays.shape[:2]), atol=1e-9)
    np.testing.assert_allclose(
        pixels[..., 1], np.broadcast_to(rows[:, None], rays.shape[:2]), atol=1e-9
    )


def test_scale_in_matrix_world_is_ignored_like_blender():
    matrix = np.array(euler_matrix(30, 20, 10))
    matrix[:3, :3] *= [2.0, 3.0, 0.5]
    scaled = BlenderCamera.from_dict(camera_dict("s", matrix_world=matrix.tolist()))
    plain = make(rotation=(30, 20, 10))
    np.testing.assert_allclose(scaled.pixel_rays(), plain.pixel_rays(), atol=1e-12)


def test_relative_poses_put_reference_at_identity():
    a = BlenderCamera.from_dict(camera_dict("a", matrix_world=euler_matrix(90, 0, 0, (1, 2, 3))))
    b = BlenderCamera.from_dict(camera_dict("b", matrix_world=euler_matrix(90, 0, 90, (4, 2, 3))))
    np.testing.assert_allclose(relative_pose(a, a), np.eye(4), atol=1e-12)
    poses = relative_poses_12([a, b])
    assert poses.shape == (2, 12)
    np.testing.assert_allclose(poses[0].reshape(3, 4), np.eye(4)[:3], atol=1e-12)
    # b sits 3 units along world +X from a; translations are normalised to unit length.
    assert np.linalg.norm(poses[1].reshape(3, 4)[:, 3]) == pytest.approx(1.0)
    rel = relative_pose(b, a)
    world_offset = a.camera_to_world_opencv()[:3, :3] @ rel[:3, 3]
    np.testing.assert_allclose(world_offset, [3, 0, 0], atol=1e-12)


def test_cameras_json_round_trip(tmp_path):
    cams = [make(rotation=(80, 5, 10)), BlenderCamera.from_dict(camera_dict("b", lens=24.0))]
    path = save_cameras(cams, tmp_path / "cameras.json", with_opencv=True)
    back = load_cameras(path)
    assert back == cams
    data = json.loads(path.read_text())
    assert set(data[0]) >= {"name", "matrix_world", "lens", "sensor_fit", "opencv"}
    assert len(data[0]["matrix_world"]) == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lens": 0}, "lens must be a number from 0.01 to 100,000 mm, got 0"),
        ({"lens": -5.0}, "lens must be a number from 0.01 to 100,000 mm, got -5.0"),
        ({"lens": 1e-300}, "lens must be a number from 0.01 to 100,000 mm, got 1e-300"),
        ({"resolution_x": 70000}, "resolution_x must be a whole number from 1 to 65,536 px"),
        ({"resolution_x": 0}, "resolution_x must be a positive integer, got 0"),
        ({"resolution_y": -4}, "resolution_y must be a positive integer, got -4"),
        ({"sensor_fit": "DIAGONAL"}, "unknown sensor_fit 'DIAGONAL'"),
        ({"matrix_world": [[0] * 4] * 3 + [[0, 0, 0, 1]]}, "rotation is singular"),
        (
            {"matrix_world": [[1, 0.3, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]},
            "not rigid",
        ),
        ({"matrix_world": [[-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}, "mirrored"),
        ({"matrix_world": [[1, 0, 0], [0, 1, 0]]}, "4 rows of 4"),
        ({"shift_x": float("nan")}, "shift_x must be a number from -100 to 100, got nan"),
    ],
)
def test_bad_camera_values_name_the_value(tmp_path, change, message):
    path = tmp_path / "cameras.json"
    path.write_text(json.dumps([camera_dict("Cam.001", **change)]))
    with pytest.raises(BadInput, match="Cam.001") as info:
        load_cameras(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_key_is_named(tmp_path):
    entry = camera_dict("Cam")
    del entry["sensor_fit"]
    path = tmp_path / "cameras.json"
    path.write_text(json.dumps([entry]))
    with pytest.raises(BadInput, match="missing key 'sensor_fit'"):
        load_cameras(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", "lists no cameras"),
        ("{", "not valid JSON"),
        ('{"name": "x"}', "must hold a JSON list"),
    ],
)
def test_bad_cameras_file(tmp_path, content, message):
    path = tmp_path / "cameras.json"
    path.write_text(content)
    with pytest.raises(BadInput, match=message):
        load_cameras(path)


def test_duplicate_camera_names_are_refused(tmp_path):
    path = tmp_path / "cameras.json"
    path.write_text(json.dumps([camera_dict("A"), camera_dict("A")]))
    with pytest.raises(BadInput, match="names camera 'A' twice"):
        load_cameras(path)


def test_fov_of_a_50mm_lens_on_36mm_sensor():
    cam = make(resolution_x=1920, resolution_y=1080)
    h, _ = cam.fov_degrees()
    assert h == pytest.approx(math.degrees(2 * math.atan(18 / 50)))
