"""Every camera rendered from a panorama's frames, in sync (``engine views``' work).

Each camera gets ``OUT/<camera>/`` (the contract's safe name) with one frame per
panorama frame, the same count and the same frame numbers, so every camera stays
frame-synchronised. One sampling map per camera is built once and reused for every
frame. Frames keep the input's kind of values: 8-bit PNG in → 8-bit PNG out; EXR/HDR in
→ float EXR out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..progress import JobContext


def render_views(
    source: Any,
    cameras: list,
    out: Path,
    ctx: JobContext,
    *,
    interpolation: str = "linear",
    source_path: Path | None = None,
    yaw_degrees: float = 0.0,
) -> Path:
    """Write ``out/<camera>/frame_N.ext`` for every panorama frame and camera, atomically.

    ``source`` is a :class:`engine.media.PanoramaSource`; ``cameras`` a list of
    :class:`engine.cameras.BlenderCamera`; ``yaw_degrees`` the World's rotation (see
    :func:`engine.cameras.turned_by_world`). ``<camera>`` is the contract's safe name.
    """
    from ..cameras import save_cameras, turned_by_world
    from ..contract import CAMERAS_NAME, KIND_CAMERA_VIEWS, frame_number, safe_names
    from ..errors import BadInput
    from ..media import atomic_output_dir, frame_path, read_image, write_image, write_manifest
    from ..projection import camera_map, pad_equirect, remap_equirect

    numbers = _frame_numbers(source.frames, frame_number)
    folders = safe_names(cam.name for cam in cameras)
    with atomic_output_dir(out) as tmp:
        first = read_image(source.frames[0])
        height, width = first.shape[:2]
        with ctx.timed("maps"):
            maps = {
                cam.name: camera_map(cam, width, height, interpolation)
                for cam in turned_by_world(cameras, yaw_degrees)
            }
        for cam in cameras:
            (tmp / folders[cam.name]).mkdir()
        padded = None  # one padded buffer, reused for every frame
        with ctx.timed("render"):
            for index, (number, path) in enumerate(zip(numbers, source.frames, strict=True)):
                ctx.step("views", index + 1, len(source.frames))
                frame = first if index == 0 else read_image(path)
                if frame.shape != first.shape or frame.dtype != first.dtype:
                    raise BadInput(
                        f"frame {path} is {frame.shape[1]}x{frame.shape[0]} {frame.dtype}; "
                        f"the first frame is {width}x{height} {first.dtype}"
                    )
                padded = pad_equirect(frame, out=padded)
                for cam in cameras:
                    view = remap_equirect(padded, maps[cam.name], padded=True)
                    write_image(frame_path(tmp / folders[cam.name], number, view.dtype), view)
        save_cameras(cameras, tmp / CAMERAS_NAME, with_opencv=True)
        manifest = {
            "kind": KIND_CAMERA_VIEWS,
            "projection": "perspective",
            "frames": len(source.frames),
            "first_frame": numbers[0],
            "fps": source.fps,
            "loop": source.loop,
            "frame_type": first.dtype.name,
            "source": str(source_path) if source_path else None,
            "source_size": [width, height],
            "interpolation": interpolation,
            "yaw_degrees": yaw_degrees,
            "cameras_file": CAMERAS_NAME,
            "cameras": [
                {"name": c.name, "folder": folders[c.name], "width": c.width, "height": c.height}
                for c in cameras
            ],
            "timings": ctx.timings,
        }
        write_manifest(tmp, manifest)
    return out


def _frame_numbers(frames: list[Path], number_of: Any) -> list[int]:
    """The input's own frame numbers (a single image is frame 0)."""
    if len(frames) == 1:
        return [0]
    return [number_of(p) for p in frames]
