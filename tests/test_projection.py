"""Equirect geometry: axes, round trips, the 360° seam, the poles, cubemaps, value kinds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import camera_dict

from engine.cameras import BlenderCamera
from engine.projection import (
    CUBE_FACES,
    FACE_ORDER,
    camera_to_equirect,
    cube_face_directions,
    cubemap_sheet,
    cubemap_to_equirect,
    direction_to_equirect,
    equirect_directions,
    equirect_to_camera,
    equirect_to_cubemap,
    equirect_to_direction,
    pad_equirect,
    remap_equirect,
    sampling_map,
)

W, H = 256, 128


def direction_image(width: int = W, height: int = H) -> np.ndarray:
    """An equirect whose pixel values are their own unit directions (smooth on the sphere)."""
    return equirect_directions(width, height).astype(np.float32)


def angular_error_px(decoded: np.ndarray, truth: np.ndarray, width: int = W) -> np.ndarray:
    """Angle between decoded and true directions, in equirect pixels (2π/W rad each)."""
    decoded = decoded / np.linalg.norm(decoded, axis=-1, keepdims=True)
    cos = np.clip(np.sum(decoded * truth, axis=-1), -1, 1)
    return np.arccos(cos) / (2 * math.pi / width)


@pytest.mark.parametrize(
    ("direction", "col", "row"),
    [
        ((1, 0, 0), 0.5 * W, H / 2),  # centre faces +X
        ((0, 1, 0), 0.25 * W, H / 2),  # u = 0.25 faces +Y
        ((0, -1, 0), 0.75 * W, H / 2),  # u = 0.75 faces -Y
        ((-1, 0, 0), 0.0, H / 2),  # the seam faces -X
        ((0, 0, 1), None, 0.0),  # top row is +Z
        ((0, 0, -1), None, H),
    ],
)
def test_blender_world_texture_axes(direction, col, row):
    c, r = direction_to_equirect(np.array(direction, dtype=float), W, H)
    if col is not None:
        assert float(c) % W == pytest.approx(col % W)
    assert float(r) == pytest.approx(row)


def test_direction_pixel_direction_round_trip():
    rng = np.random.default_rng(0)
    d = rng.normal(size=(10000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    col, row = direction_to_equirect(d, W, H)
    assert (col >= 0).all() and (col < W).all() and (row >= 0).all() and (row <= H).all()
    np.testing.assert_allclose(equirect_to_direction(col, row, W, H), d, atol=1e-12)


def test_pad_continues_over_the_pole_and_wraps_the_seam():
    img = np.arange(8 * 16).reshape(8, 16)
    padded = pad_equirect(img, 2)
    assert padded.shape == (12, 20)
    # The row just above row 0 is row 0 turned half a revolution.
    np.testing.assert_array_equal(padded[1, 2:-2], np.roll(img[0], 8))
    np.testing.assert_array_equal(padded[0, 2:-2], np.roll(img[1], 8))
    np.testing.assert_array_equal(padded[-1, 2:-2], np.roll(img[-2], 8))
    # Columns wrap around the 360° seam.
    np.testing.assert_array_equal(padded[2:-2, 0], img[:, -2])
    np.testing.assert_array_equal(padded[2:-2, -1], img[:, 1])


def test_nearest_identity_map_reproduces_every_pixel():
    img = np.random.default_rng(1).integers(0, 255, (H, W, 3), dtype=np.uint8)
    smap = sampling_map(equirect_directions(W, H), W, H, "nearest")
    np.testing.assert_array_equal(remap_equirect(img, smap), img)


def rotated_directions(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Directions of every pixel of a W×H equirect seen from a rotated frame."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    rz = np.array(
        [[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]]
    )
    ry = np.array(
        [[math.cos(pitch), 0, math.sin(pitch)], [0, 1, 0], [-math.sin(pitch), 0, math.cos(pitch)]]
    )
    return equirect_directions(W, H) @ (rz @ ry).T


def test_seam_and_pole_errors_are_no_larger_than_interior_errors():
    """Resample a smooth pattern (each pixel's own direction) through a rotation that
    sweeps the seam and both poles across the image; bin the error by where each
    sample read from the source."""
    source = direction_image()
    dirs = rotated_directions(37.0, 23.0)
    out = remap_equirect(source, sampling_map(dirs, W, H))
    error = angular_error_px(out.astype(np.float64), dirs)
    col, row = direction_to_equirect(dirs, W, H)
    near_seam = (col < 1.0) | (col > W - 1.0)
    near_pole = (row < 1.0) | (row > H - 1.0)
    interior = ~near_seam & ~near_pole
    assert near_seam.sum() > 100 and near_pole.sum() >= 10
    # "No larger than anywhere else": the worst seam or pole sample is no worse than the
    # worst interior sample (all are ~0.02 px: bilinear error of a curved pattern).
    assert error[near_seam].max() <= error[interior].max()
    assert error[near_pole].max() <= error[interior].max()


def test_a_sampler_without_wrapping_would_fail_the_seam_check():
    """The seam check above can fail: clamp instead of wrap and the seam column breaks."""
    import cv2

    source = direction_image()
    dirs = rotated_directions(37.0, 23.0)
    col, row = direction_to_equirect(dirs, W, H)
    clamped = cv2.remap(
        source,
        (col - 0.5).astype(np.float32),
        (row - 0.5).astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    error = angular_error_px(clamped.astype(np.float64), dirs)
    near_seam = (col < 0.5) | (col > W - 0.5)
    assert error[near_seam].max() > 10 * np.percentile(error[~near_seam], 99)


@pytest.mark.parametrize(
    "rotation", [(90, 0, -90), (90, 0, 90), (0, 0, 0), (180, 0, 0), (45, 0, 180)]
)
def test_camera_view_of_direction_image_decodes_to_its_rays(rotation):
    cam = BlenderCamera.from_dict(
        camera_dict("c", rotation, lens=18.0, resolution_x=96, resolution_y=64)
    )
    view = equirect_to_camera(direction_image(), cam)
    error = angular_error_px(view.astype(np.float64), cam.pixel_rays())
    assert error.max() < 0.05  # in source pixels; up, down and the seam alike


@pytest.mark.parametrize(
    ("dtype", "scale"), [(np.uint8, 255), (np.uint16, 65535), (np.float32, 5000.0)]
)
def test_sampling_keeps_kind_of_values(dtype, scale):
    rng = np.random.default_rng(2)
    img = (rng.random((H, W, 3)) * scale).astype(dtype)
    cam = BlenderCamera.from_dict(camera_dict("c", (90, 0, -90), resolution_x=32, resolution_y=32))
    view = equirect_to_camera(img, cam)
    assert view.dtype == dtype
    if dtype == np.float32:
        assert view.max() > 1.0  # HDR values are kept, not clipped


def test_one_map_serves_every_frame():
    cam = BlenderCamera.from_dict(camera_dict("c", (80, 0, 10), resolution_x=40, resolution_y=30))
    from engine.projection import camera_map

    smap = camera_map(cam, W, H)
    rng = np.random.default_rng(3)
    for _ in range(3):
        frame = rng.random((H, W, 3)).astype(np.float32)
        np.testing.assert_array_equal(remap_equirect(frame, smap), equirect_to_camera(frame, cam))


def test_perspective_to_equirect_puts_pixels_back_where_they_came_from():
    cam = BlenderCamera.from_dict(
        camera_dict("c", (100, 0, 150), lens=24.0, resolution_x=160, resolution_y=120)
    )
    view = equirect_to_camera(direction_image(), cam)
    pano, covered = camera_to_equirect(view, cam, W, H)
    assert covered.sum() > 1000
    truth = equirect_directions(W, H)
    # Away from the frame's border, back-projected values decode to the right direction.
    inner = covered & (np.abs(pano).sum(-1) > 0)
    error = angular_error_px(pano[inner].astype(np.float64), truth[inner])
    assert np.median(error) < 0.1
    assert not covered[:, :].all()


def test_cube_faces_follow_documented_axes():
    for face, (forward, _, up) in CUBE_FACES.items():
        d = cube_face_directions(face, 4)
        centre = d[1:3, 1:3].mean(axis=(0, 1))
        np.testing.assert_allclose(centre / np.linalg.norm(centre), forward, atol=1e-12)
        assert d[0].mean(axis=0) @ np.array(up) > 0  # top row leans towards "up"
    img = direction_image()
    faces = equirect_to_cubemap(img, 32)
    # The front face shows the equirect centre (+X), like py360convert's front face.
    np.testing.assert_allclose(faces["F"][16, 16], [1, 0, 0], atol=0.05)


def test_cubemap_round_trip_below_half_a_pixel():
    img = direction_image()
    faces = equirect_to_cubemap(img, W // 4)
    back = cubemap_to_equirect(faces, W, H)
    error = angular_error_px(back.astype(np.float64), equirect_directions(W, H))
    assert error.max() < 0.5
    assert np.mean(error) < 0.05


def test_cubemap_sheets_have_the_documented_layouts():
    faces = {f: np.full((8, 8, 3), i, np.uint8) for i, f in enumerate(FACE_ORDER)}
    horizon = cubemap_sheet(faces, "horizon")
    assert horizon.shape == (8, 48, 3)
    assert [int(horizon[0, 8 * i, 0]) for i in range(6)] == list(range(6))
    dice = cubemap_sheet(faces, "dice")
    assert dice.shape == (24, 32, 3)
    assert dice[12, 12, 0] == FACE_ORDER.index("F")
    assert dice[4, 12, 0] == FACE_ORDER.index("U")
    assert dice[20, 12, 0] == FACE_ORDER.index("D")
    assert dice[12, 28, 0] == FACE_ORDER.index("B")
