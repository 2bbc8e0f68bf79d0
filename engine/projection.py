"""Directions ↔ equirect pixels, and resampling between equirect panoramas, cameras and cubemaps.

Equirect convention (Blender's world texture, Cycles ``direction_to_equirectangular``):

- world axes Z up; a panorama of width W and height H = W/2;
- ``u = 0.5 − atan2(y, x) / 2π``, column ``u·W``: the centre column faces **+X**,
  ``u = 0.25`` faces +Y, ``u = 0.75`` faces −Y, the wrap seam ``u = 0 ≡ 1`` faces −X;
- row ``acos(z)/π · H`` counted from the **top**: row 0 is +Z (the zenith);
- pixel centres sit at +0.5: pixel (i, r) covers [i, i+1) × [r, r+1). Seen from inside
  the sphere the image is not mirrored.

Sampling wraps across the 360° seam and continues over the poles (the row above the
top row is the top row turned half a revolution), so there is no seam column and no
pole artefact. Maps are built once per camera and reused for every frame of a video.
Values keep their dtype: uint8/uint16 stay integers, float32 HDR keeps values above 1.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal

import numpy as np

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
import cv2  # noqa: E402

from .cameras import BlenderCamera  # noqa: E402
from .errors import BadInput  # noqa: E402

Interpolation = Literal["linear", "cubic", "nearest"]
_CV_INTERP = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}
#: Rows/columns of wrapped context around a panorama: cubic interpolation reads 2.
PAD = 2

# --------------------------------------------------------------------------- directions


def direction_to_equirect(
    directions: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """World directions (…, 3) → continuous (column, row) in a W×H equirect, centres at +0.5.

    Columns lie in [0, W), rows in [0, H]. Directions need not be unit length.
    float32 input is computed in float32 (fast map building), anything else in float64.
    """
    d = np.asarray(directions)
    if d.dtype != np.float32:
        d = d.astype(np.float64, copy=False)
    x, y, z = d[..., 0], d[..., 1], d[..., 2]
    u = 0.5 - np.arctan2(y, x) * (1 / (2 * math.pi))
    col = np.mod(u * width, width)
    # atan2(|xy|, z) is acos(z/|d|) without normalising, and accurate at the poles.
    row = np.arctan2(np.hypot(x, y), z) * (height / math.pi)
    return col, row


def equirect_to_direction(col: np.ndarray, row: np.ndarray, width: int, height: int) -> np.ndarray:
    """Continuous equirect (column, row) (centres at +0.5) → unit world directions (…, 3)."""
    col = np.asarray(col, dtype=np.float64)
    row = np.asarray(row, dtype=np.float64)
    azimuth = (0.5 - col / width) * 2 * math.pi  # atan2(y, x)
    polar = row / height * math.pi  # from +Z
    azimuth, polar = np.broadcast_arrays(azimuth, polar)
    sin_p = np.sin(polar)
    return np.stack([sin_p * np.cos(azimuth), sin_p * np.sin(azimuth), np.cos(polar)], axis=-1)


def equirect_directions(width: int, height: int) -> np.ndarray:
    """Unit direction of every pixel centre of a W×H equirect, shape (H, W, 3)."""
    cols = np.arange(width, dtype=np.float64) + 0.5
    rows = np.arange(height, dtype=np.float64) + 0.5
    return equirect_to_direction(cols[None, :], rows[:, None], width, height)


# --------------------------------------------------------------------------- sampling maps


def pad_equirect(image: np.ndarray, pad: int = PAD, out: np.ndarray | None = None) -> np.ndarray:
    """Surround an equirect (H, W, …) with ``pad`` pixels of spherical context.

    Left/right: wrapped columns (the 360° seam). Above the top row: rows 0, 1, … mirrored
    and turned half a revolution (continuing over the pole); likewise below the bottom.
    ``out`` (shape (H + 2·pad, W + 2·pad, …), same dtype) is filled and returned instead of
    a new array: reusing one buffer for every frame of a video saves an allocation and
    its page faults per frame.
    """
    height, width = image.shape[:2]
    if width % 2:
        raise ValueError(f"equirect width must be even to continue over the poles, got {width}")
    if pad == 0:
        return image
    shape = (height + 2 * pad, width + 2 * pad) + image.shape[2:]
    if out is None or out.shape != shape or out.dtype != image.dtype:
        out = np.empty(shape, dtype=image.dtype)
    out[pad : pad + height, pad : pad + width] = image
    # Beyond a pole the sphere continues with the rows nearest that pole, half a turn round.
    half = width // 2
    for k in range(pad):
        _fill_rolled_row(out[pad - 1 - k, pad : pad + width], image[k], half)
        _fill_rolled_row(out[height + pad + k, pad : pad + width], image[height - 1 - k], half)
    # Then every row, the pole bands included, wraps around the 360° seam.
    out[:, :pad] = out[:, width : width + pad]
    out[:, width + pad :] = out[:, pad : 2 * pad]
    return out


def _fill_rolled_row(target: np.ndarray, row: np.ndarray, half: int) -> None:
    target[:half] = row[half:]
    target[half:] = row[:half]


@dataclass(frozen=True)
class SamplingMap:
    """Where each output pixel reads from a padded W×H equirect (OpenCV remap maps).

    Built once per camera or face layout and reused for every frame. ``map1``/``map2``
    are OpenCV's fixed-point form (``cv2.convertMaps``), which remaps fastest.
    """

    source_width: int
    source_height: int
    map1: np.ndarray
    map2: np.ndarray
    interpolation: Interpolation

    @property
    def shape(self) -> tuple[int, int]:
        return self.map1.shape[:2]


def sampling_map(
    directions: np.ndarray,
    width: int,
    height: int,
    interpolation: Interpolation = "linear",
) -> SamplingMap:
    """A :class:`SamplingMap` reading each of ``directions`` (H', W', 3) from a W×H equirect."""
    col, row = direction_to_equirect(directions, width, height)
    # OpenCV puts pixel centres at integers; our pixels are centred at +0.5; PAD shifts.
    map_x = (col - 0.5 + PAD).astype(np.float32)
    map_y = (row - 0.5 + PAD).astype(np.float32)
    if interpolation == "nearest":
        # Exact nearest neighbour: round in float64 ourselves (OpenCV's fixed point may
        # round a centre-aligned sample to the wrong neighbour).
        map_x = np.floor(col + PAD).astype(np.float32)
        map_y = np.floor(np.minimum(row, height - 1e-9) + PAD).astype(np.float32)
    map1, map2 = cv2.convertMaps(
        map_x, map_y, cv2.CV_16SC2, nninterpolation=interpolation == "nearest"
    )
    return SamplingMap(width, height, map1, map2, interpolation)


def remap_equirect(image: np.ndarray, smap: SamplingMap, padded: bool = False) -> np.ndarray:
    """Resample one equirect frame through ``smap``; keeps dtype (HDR values kept).

    ``padded=True`` means ``image`` already went through :func:`pad_equirect` (share one
    padded frame between many cameras).
    """
    source = image if padded else pad_equirect(image)
    expected = (smap.source_height + 2 * PAD, smap.source_width + 2 * PAD)
    if source.shape[:2] != expected:
        raise BadInput(
            f"panorama frame is {source.shape[1] - 2 * PAD}x{source.shape[0] - 2 * PAD}, "
            f"the map was built for {smap.source_width}x{smap.source_height}"
        )
    out = cv2.remap(
        source,
        smap.map1,
        smap.map2,
        _CV_INTERP[smap.interpolation],
        borderMode=cv2.BORDER_REPLICATE,
    )
    if out.ndim == 2 and source.ndim == 3:
        out = out[:, :, None]
    return out


# --------------------------------------------------------------------------- cameras


def camera_map(
    camera: BlenderCamera, width: int, height: int, interpolation: Interpolation = "linear"
) -> SamplingMap:
    """The sampling map that renders ``camera`` (perspective) from a W×H equirect."""
    # float32 directions are plenty (about 1e-4 px at 8K) and halve the map's build time.
    rays = camera.pixel_rays(normalize=False, dtype=np.float32)
    return sampling_map(rays, width, height, interpolation)


def equirect_to_camera(
    image: np.ndarray, camera: BlenderCamera, interpolation: Interpolation = "linear"
) -> np.ndarray:
    """Render a perspective ``camera`` from an equirect frame (as Cycles would, world only)."""
    height, width = image.shape[:2]
    return remap_equirect(image, camera_map(camera, width, height, interpolation))


def camera_to_equirect(
    image: np.ndarray,
    camera: BlenderCamera,
    width: int,
    height: int,
    interpolation: Interpolation = "linear",
) -> tuple[np.ndarray, np.ndarray]:
    """Place a perspective camera image onto a W×H equirect.

    Returns ``(panorama, covered)``: pixels the camera does not see are 0 and
    ``covered`` (H, W) bool marks the ones it does.
    """
    if image.shape[:2] != (camera.resolution_y, camera.resolution_x):
        raise BadInput(
            f"image is {image.shape[1]}x{image.shape[0]} but camera {camera.name!r} "
            f"renders {camera.resolution_x}x{camera.resolution_y}"
        )
    pixels, in_front = camera.project(equirect_directions(width, height))
    u, v = pixels[..., 0], pixels[..., 1]
    covered = (
        in_front & (u >= 0) & (u <= camera.resolution_x) & (v >= 0) & (v <= camera.resolution_y)
    )
    map_x = np.where(covered, u - 0.5, -10).astype(np.float32)
    map_y = np.where(covered, v - 0.5, -10).astype(np.float32)
    out = cv2.remap(image, map_x, map_y, _CV_INTERP[interpolation], borderMode=cv2.BORDER_REPLICATE)
    if out.ndim == 2 and image.ndim == 3:
        out = out[:, :, None]
    out[~covered] = 0
    return out, covered


# --------------------------------------------------------------------------- cubemaps

#: Face order and axes, compatible with py360convert's ``F R B L U D`` (its front face is
#: the equirect centre). Each face: (forward, image-right, image-up) in Blender world
#: axes, as seen from inside the cube.
#:
#: - F = +X (the panorama centre), R = −Y, B = −X (the seam), L = +Y;
#: - U = +Z with its bottom edge against F's top edge; D = −Z with its top edge against F.
#:
#: Unity and Unreal are Y-up/Z-up left-handed engines: Blender +X is Unity −X and Unreal
#: +X after their importers' axis swap, so a Unity Skybox/Panoramic needs rotation 180°
#: to show the equirect centre where Blender shows it; Unreal's 2:1 HDR import matches.
CUBE_FACES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]] = {
    "F": ((1, 0, 0), (0, -1, 0), (0, 0, 1)),
    "R": ((0, -1, 0), (-1, 0, 0), (0, 0, 1)),
    "B": ((-1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "L": ((0, 1, 0), (1, 0, 0), (0, 0, 1)),
    "U": ((0, 0, 1), (0, -1, 0), (-1, 0, 0)),
    "D": ((0, 0, -1), (0, -1, 0), (1, 0, 0)),
}
FACE_ORDER = tuple(CUBE_FACES)
CubeLayout = Literal["horizon", "dice"]
#: Dice (cross) layout cells (row, column) in a 3×4 grid of faces.
DICE_CELLS = {"U": (0, 1), "L": (1, 0), "F": (1, 1), "R": (1, 2), "B": (1, 3), "D": (2, 1)}


def cube_face_directions(face: str, size: int) -> np.ndarray:
    """Unit world direction of every pixel centre of a cube face, shape (size, size, 3)."""
    forward, right, up = (np.array(v, dtype=np.float64) for v in CUBE_FACES[face])
    a = (np.arange(size) + 0.5) / size * 2 - 1
    d = forward + a[None, :, None] * right + (-a)[:, None, None] * up
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def equirect_to_cubemap(
    image: np.ndarray, face_size: int, interpolation: Interpolation = "linear"
) -> dict[str, np.ndarray]:
    """Six cube faces (F R B L U D, see :data:`CUBE_FACES`) of ``face_size``² from an equirect."""
    height, width = image.shape[:2]
    padded = pad_equirect(image)
    return {
        face: remap_equirect(
            padded,
            sampling_map(cube_face_directions(face, face_size), width, height, interpolation),
            padded=True,
        )
        for face in FACE_ORDER
    }


def cubemap_to_equirect(
    faces: dict[str, np.ndarray], width: int, height: int, interpolation: Interpolation = "linear"
) -> np.ndarray:
    """Assemble a W×H equirect from six cube faces (orientation of :data:`CUBE_FACES`).

    Each equirect pixel reads the face its direction hits, bilinearly, with face edges
    clamped (so the result has no gaps; edges are half a face pixel off at worst).
    """
    size = faces["F"].shape[0]
    dirs = equirect_directions(width, height)
    out = np.zeros((height, width) + faces["F"].shape[2:], dtype=faces["F"].dtype)
    best = np.full((height, width), -np.inf)
    choice = np.zeros((height, width), dtype=np.int8)
    for i, face in enumerate(FACE_ORDER):
        along = dirs @ np.array(CUBE_FACES[face][0], dtype=np.float64)
        better = along > best
        best = np.where(better, along, best)
        choice[better] = i
    for i, face in enumerate(FACE_ORDER):
        forward, right, up = (np.array(v, dtype=np.float64) for v in CUBE_FACES[face])
        sel = choice == i
        d = dirs[sel]
        z = d @ forward
        a = (d @ right) / z
        b = (d @ up) / z
        map_x = ((a + 1) / 2 * size - 0.5).astype(np.float32)[None, :]
        map_y = ((1 - b) / 2 * size - 0.5).astype(np.float32)[None, :]
        sampled = cv2.remap(
            faces[face], map_x, map_y, _CV_INTERP[interpolation], borderMode=cv2.BORDER_REPLICATE
        )
        out[sel] = sampled.reshape((-1,) + faces[face].shape[2:])
    return out


def cubemap_sheet(faces: dict[str, np.ndarray], layout: CubeLayout = "horizon") -> np.ndarray:
    """Lay six faces out as one image: ``horizon`` (6×1: F R B L U D) or ``dice`` (cross)."""
    size = faces["F"].shape[0]
    if layout == "horizon":
        return np.concatenate([faces[f] for f in FACE_ORDER], axis=1)
    if layout == "dice":
        sheet = np.zeros((3 * size, 4 * size) + faces["F"].shape[2:], dtype=faces["F"].dtype)
        for face, (r, c) in DICE_CELLS.items():
            sheet[r * size : (r + 1) * size, c * size : (c + 1) * size] = faces[face]
        return sheet
    raise BadInput(f"unknown cubemap layout {layout!r} (use horizon or dice)")
