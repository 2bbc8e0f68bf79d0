"""Blender cameras as plain values: ``cameras.json`` ↔ :class:`BlenderCamera` → rays, K, poses.

Conventions (Blender's, checked against Cycles renders in ``tests/test_blender_reference.py``):

- World axes: Z up. ``matrix_world`` columns are camera right (+X), camera up (+Y),
  camera back (+Z; the camera looks down −Z) and the position.
- Pixels: column ``i`` and row ``r`` (row 0 at the top) have their centre at
  ``(i + 0.5, r + 0.5)``; the image's top-left corner is ``(0, 0)``. The OpenCV
  intrinsics returned here use that same continuous coordinate frame
  (as COLMAP and most NeRF tools read Blender renders).
- OpenCV camera-to-world is ``matrix_world @ diag(1, −1, −1, 1)`` (x right, y down,
  z forward).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .contract import (
    CAMERA_LENS,
    CAMERA_PIXEL_ASPECT,
    CAMERA_RESOLUTION,
    CAMERA_SENSOR,
    CAMERA_SHIFT,
    COORDINATE,
    Limit,
    safe_names,
)
from .errors import BadInput

SensorFit = Literal["AUTO", "HORIZONTAL", "VERTICAL"]
SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")
CAMERA_KEYS = (
    "name",
    "matrix_world",
    "lens",
    "sensor_width",
    "sensor_height",
    "sensor_fit",
    "shift_x",
    "shift_y",
    "resolution_x",
    "resolution_y",
    "pixel_aspect_x",
    "pixel_aspect_y",
)
#: How far a rotation may stray from orthonormal (after removing per-axis scale, which
#: Blender also removes for cameras) before it counts as sheared.
RIGID_TOLERANCE = 1e-4
BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class BlenderCamera:
    """A perspective camera exactly as Blender describes it (property names are Blender's).

    Lengths in millimetres (``lens``, sensor sizes); ``shift_*`` in units of the fitted
    sensor dimension; resolutions in pixels (after the render percentage);
    ``matrix_world`` a 4×4 row-major list.
    """

    name: str
    matrix_world: tuple[tuple[float, ...], ...]
    lens: float = 50.0
    sensor_width: float = 36.0
    sensor_height: float = 24.0
    sensor_fit: SensorFit = "AUTO"
    shift_x: float = 0.0
    shift_y: float = 0.0
    resolution_x: int = 1920
    resolution_y: int = 1080
    pixel_aspect_x: float = 1.0
    pixel_aspect_y: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "camera") -> BlenderCamera:
        """Build and validate a camera from a ``cameras.json`` entry.

        Every key of :data:`CAMERA_KEYS` is required; other keys are kept in ``extra``.
        Raises :class:`BadInput` naming the camera and the bad value.
        """
        if not isinstance(data, dict):
            raise BadInput(f"{where} must be a JSON object, got {type(data).__name__}")
        missing = [k for k in CAMERA_KEYS if k not in data]
        if missing:
            label = data.get("name", where)
            raise BadInput(f"camera {label!r} in {where} is missing key {missing[0]!r}")
        name = data["name"]
        if not isinstance(name, str) or not name.strip():
            raise BadInput(f"{where}: camera name must be a non-empty string, got {name!r}")
        camera = cls(
            name=name,
            matrix_world=_parse_matrix(data["matrix_world"], name),
            lens=_within(data["lens"], CAMERA_LENS, "lens", name),
            sensor_width=_within(data["sensor_width"], CAMERA_SENSOR, "sensor_width", name),
            sensor_height=_within(data["sensor_height"], CAMERA_SENSOR, "sensor_height", name),
            sensor_fit=_sensor_fit(data["sensor_fit"], name),
            shift_x=_within(data["shift_x"], CAMERA_SHIFT, "shift_x", name),
            shift_y=_within(data["shift_y"], CAMERA_SHIFT, "shift_y", name),
            resolution_x=_resolution(data["resolution_x"], "resolution_x", name),
            resolution_y=_resolution(data["resolution_y"], "resolution_y", name),
            pixel_aspect_x=_within(
                data["pixel_aspect_x"], CAMERA_PIXEL_ASPECT, "pixel_aspect_x", name
            ),
            pixel_aspect_y=_within(
                data["pixel_aspect_y"], CAMERA_PIXEL_ASPECT, "pixel_aspect_y", name
            ),
            extra={k: v for k, v in data.items() if k not in CAMERA_KEYS},
        )
        camera.rotation()  # validates rigidity now, not halfway through a job
        return camera

    def to_dict(self) -> dict[str, Any]:
        """The ``cameras.json`` entry: Blender's property names, matrix as 4 rows."""
        data = asdict(self)
        extra = data.pop("extra")
        data["matrix_world"] = [list(row) for row in self.matrix_world]
        data.update(extra)
        return data

    # ------------------------------------------------------------------ geometry

    @property
    def width(self) -> int:
        return self.resolution_x

    @property
    def height(self) -> int:
        return self.resolution_y

    def matrix(self) -> np.ndarray:
        """``matrix_world`` as a float64 4×4 array."""
        return np.array(self.matrix_world, dtype=np.float64)

    def rotation(self) -> np.ndarray:
        """Camera-to-world rotation (3×3, columns right/up/back), scale removed as Blender does.

        Raises :class:`BadInput` for a singular, sheared or mirrored matrix.
        """
        basis = self.matrix()[:3, :3]
        norms = np.linalg.norm(basis, axis=0)
        if np.any(norms < 1e-9) or not np.all(np.isfinite(basis)):
            raise BadInput(f"camera {self.name!r}: matrix_world rotation is singular")
        rot = basis / norms
        error = np.abs(rot.T @ rot - np.eye(3)).max()
        if error > RIGID_TOLERANCE:
            raise BadInput(
                f"camera {self.name!r}: matrix_world rotation is not rigid "
                f"(axes {error:.3g} from orthogonal; sheared?)"
            )
        if np.linalg.det(rot) < 0:
            raise BadInput(f"camera {self.name!r}: matrix_world is mirrored (negative scale)")
        return rot

    def position(self) -> np.ndarray:
        """Camera centre in world units."""
        return self.matrix()[:3, 3].copy()

    def view_direction(self) -> np.ndarray:
        """Unit vector the camera looks along (its −Z axis) in world space."""
        return -self.rotation()[:, 2]

    def _fit(self) -> tuple[str, float, float]:
        """(effective fit, sensor size in mm, fitted dimension in pixels), as Blender computes.

        AUTO fits the larger of width·pixel_aspect_x and height·pixel_aspect_y but keeps
        ``sensor_width`` as the sensor size.
        """
        ycor = self.pixel_aspect_y / self.pixel_aspect_x
        fit = self.sensor_fit
        if fit == "AUTO":
            wide = (
                self.pixel_aspect_x * self.resolution_x >= self.pixel_aspect_y * self.resolution_y
            )
            effective = "HORIZONTAL" if wide else "VERTICAL"
            sensor = self.sensor_width
        else:
            effective = fit
            sensor = self.sensor_width if fit == "HORIZONTAL" else self.sensor_height
        fitted_px = self.resolution_x if effective == "HORIZONTAL" else ycor * self.resolution_y
        return effective, sensor, fitted_px

    def intrinsics(self) -> np.ndarray:
        """OpenCV K (3×3) in pixels; pixel centres at +0.5 (see the module docstring).

        ``fx = lens / sensor · fitted_px``; ``fy`` differs from ``fx`` only by the
        pixel aspect; ``cx = W/2 − shift_x·fitted_px``, ``cy = H/2 + shift_y·fitted_px / ycor``.
        """
        _, sensor, fitted_px = self._fit()
        ycor = self.pixel_aspect_y / self.pixel_aspect_x
        fx = self.lens / sensor * fitted_px
        fy = fx / ycor
        cx = self.resolution_x / 2 - self.shift_x * fitted_px
        cy = self.resolution_y / 2 + self.shift_y * fitted_px / ycor
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    def camera_to_world_opencv(self) -> np.ndarray:
        """4×4 OpenCV camera-to-world (x right, y down, z forward), scale removed."""
        c2w = np.eye(4)
        c2w[:3, :3] = self.rotation()
        c2w[:3, 3] = self.position()
        return c2w @ BLENDER_TO_OPENCV

    def pixel_rays(self, normalize: bool = True, dtype: type = np.float64) -> np.ndarray:
        """World directions through every pixel centre, shape (H, W, 3), row 0 at top.

        Unit length unless ``normalize=False`` (then each ray has OpenCV depth 1, which
        is all a direction → pixel lookup needs, and is cheaper). ``dtype=np.float32``
        halves the cost where 1e-7 relative precision is enough (sampling maps).
        """
        k = self.intrinsics()
        rot_cv = self.camera_to_world_opencv()[:3, :3].astype(dtype)
        x = ((np.arange(self.resolution_x) + 0.5 - k[0, 2]) / k[0, 0]).astype(dtype)
        y = ((np.arange(self.resolution_y) + 0.5 - k[1, 2]) / k[1, 1]).astype(dtype)
        # OpenCV camera frame: x right, y down, z forward; world ray = R_cv @ (x, y, 1).
        rays = x[None, :, None] * rot_cv[:, 0] + y[:, None, None] * rot_cv[:, 1]
        rays += rot_cv[:, 2]
        if normalize:
            rays /= np.sqrt(np.einsum("...i,...i->...", rays, rays))[..., None]
        return rays

    def project(self, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world directions (…, 3) to pixel coordinates (…, 2) (centres at +0.5).

        Returns ``(pixels, in_front)``; ``in_front`` is False where the direction points
        behind the camera (its pixel is meaningless there).
        """
        rot_cv = self.camera_to_world_opencv()[:3, :3]
        local = np.asarray(directions, dtype=np.float64) @ rot_cv
        z = local[..., 2]
        in_front = z > 1e-9
        safe = np.where(in_front, z, 1.0)
        k = self.intrinsics()
        u = k[0, 0] * local[..., 0] / safe + k[0, 2]
        v = k[1, 1] * local[..., 1] / safe + k[1, 2]
        return np.stack([u, v], axis=-1), in_front

    def fov_degrees(self) -> tuple[float, float]:
        """Full horizontal and vertical field of view in degrees (ignoring shift)."""
        k = self.intrinsics()
        return (
            math.degrees(2 * math.atan(self.resolution_x / 2 / k[0, 0])),
            math.degrees(2 * math.atan(self.resolution_y / 2 / k[1, 1])),
        )


# ---------------------------------------------------------------------- relative poses


def relative_pose(camera: BlenderCamera, reference: BlenderCamera) -> np.ndarray:
    """Camera-to-world of ``camera`` in ``reference``'s frame: ``inv(c2w_ref) @ c2w``.

    Both in OpenCV axes; returns 4×4. Translation is in world units (not normalised).
    """
    ref = reference.camera_to_world_opencv()
    return np.linalg.inv(ref) @ camera.camera_to_world_opencv()


def relative_poses_12(cameras: list[BlenderCamera], reference: int = 0) -> np.ndarray:
    """SynCamMaster's camera form: per camera the flattened 3×4 [R|t] (12 numbers),
    relative to ``cameras[reference]``, translations scaled so the farthest camera is
    at distance 1 from the reference (all zeros stays zeros). Shape (N, 12).
    """
    if not cameras:
        raise BadInput("no cameras given")
    poses = np.stack([relative_pose(c, cameras[reference]) for c in cameras])
    scale = np.linalg.norm(poses[:, :3, 3], axis=1).max()
    if scale > 1e-12:
        poses[:, :3, 3] /= scale
    return poses[:, :3, :4].reshape(len(cameras), 12)


# ---------------------------------------------------------------------- cameras.json


def turned_by_world(cameras: list[BlenderCamera], yaw_degrees: float) -> list[BlenderCamera]:
    """The cameras as the panorama sees them when the World is turned by ``yaw_degrees``.

    PanoLoop's Mapping node (type Point, Z rotation = yaw) looks the texture up at
    ``Rz(yaw) · d`` for a world direction ``d``; a camera ray ``d = R_cam · d_cam`` thus
    reads texture direction ``Rz(yaw) · R_cam · d_cam``: the same camera with
    ``matrix_world`` premultiplied by ``Rz(yaw)``.
    """
    if yaw_degrees == 0:
        return list(cameras)
    turn = np.eye(4)
    turn[:3, :3] = yaw_rotation(yaw_degrees)
    return [
        replace(cam, matrix_world=tuple(map(tuple, (turn @ np.asarray(cam.matrix_world)).tolist())))
        for cam in cameras
    ]


def yaw_rotation(yaw_degrees: float) -> np.ndarray:
    """Rz(yaw): the 3×3 rotation about +Z by ``yaw_degrees``, counter-clockwise from above."""
    angle = np.radians(yaw_degrees)
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def load_cameras(path: str | os.PathLike[str]) -> list[BlenderCamera]:
    """Read and validate ``cameras.json`` (a JSON list of camera objects).

    Raises :class:`BadInput` for a missing file, invalid JSON, an empty list, a missing
    key, a bad value, or two cameras with the same name (their folders would collide).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"cameras file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"cameras file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise BadInput(f"cameras file {path} must hold a JSON list, got {type(data).__name__}")
    if not data:
        raise BadInput(f"cameras file {path} lists no cameras")
    cameras = [BlenderCamera.from_dict(item, where=f"{path}[{i}]") for i, item in enumerate(data)]
    seen: set[str] = set()
    for cam in cameras:
        if cam.name in seen:
            raise BadInput(f"cameras file {path} names camera {cam.name!r} twice")
        seen.add(cam.name)
    safe_names(seen)  # every camera gets its own folder (refuses what cannot)
    return cameras


def cameras_to_json(cameras: list[BlenderCamera], *, with_opencv: bool = False) -> list[dict]:
    """``cameras.json`` entries; with ``with_opencv`` also K, OpenCV c2w and relative poses."""
    entries = []
    rel = relative_poses_12(cameras) if with_opencv and cameras else None
    for i, cam in enumerate(cameras):
        entry = cam.to_dict()
        if with_opencv:
            entry["opencv"] = {
                "K": cam.intrinsics().tolist(),
                "camera_to_world": cam.camera_to_world_opencv().tolist(),
                "relative_to": cameras[0].name,
                "relative_pose_3x4": np.asarray(rel[i]).reshape(3, 4).tolist(),
                "pixel_centres": "+0.5 (top-left corner is 0,0)",
            }
        entries.append(entry)
    return entries


def save_cameras(
    cameras: list[BlenderCamera], path: str | os.PathLike[str], *, with_opencv: bool = False
) -> Path:
    """Write ``cameras.json``; readable back by :func:`load_cameras`."""
    path = Path(path)
    path.write_text(
        json.dumps(cameras_to_json(cameras, with_opencv=with_opencv), indent=2) + "\n",
        encoding="utf-8",
    )
    return path


# ---------------------------------------------------------------------- validators


def _within(value: Any, limit: Limit, key: str, name: str) -> float:
    """A camera value within its shared limit (finite, of a size Blender can hold)."""
    return limit.check(value, f"camera {name!r}: {key}")


def _resolution(value: Any, key: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BadInput(f"camera {name!r}: {key} must be a positive integer, got {value!r}")
    return CAMERA_RESOLUTION.check(value, f"camera {name!r}: {key}")


def _sensor_fit(value: Any, name: str) -> SensorFit:
    if value not in SENSOR_FITS:
        raise BadInput(
            f"camera {name!r}: unknown sensor_fit {value!r} (use AUTO, HORIZONTAL or VERTICAL)"
        )
    return value


def _parse_matrix(value: Any, name: str) -> tuple[tuple[float, ...], ...]:
    try:
        matrix = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInput(f"camera {name!r}: matrix_world must be 4 rows of 4 numbers") from None
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise BadInput(
            f"camera {name!r}: matrix_world must be 4 rows of 4 finite numbers, got {value!r}"
        )
    if np.abs(matrix[:3, 3]).max() > COORDINATE.high:
        raise BadInput(
            f"camera {name!r}: matrix_world position {matrix[:3, 3].tolist()} is beyond "
            f"{COORDINATE.high:g} m"
        )
    if not np.allclose(matrix[3], [0, 0, 0, 1], atol=1e-6):
        raise BadInput(f"camera {name!r}: matrix_world last row must be 0 0 0 1, got {matrix[3]}")
    return tuple(tuple(float(x) for x in row) for row in matrix)
