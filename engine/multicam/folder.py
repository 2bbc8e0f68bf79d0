"""The multicam output folder: reprojected clips, Blender's renders, MP4s, contact sheet.

See :mod:`engine.multicam` for the layout; ``engine multicam`` checks the inputs first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..contract import (
    CAMERAS_NAME,
    KIND_MULTICAM,
    RENDERS_DIR,
    SHEET_NAME,
    VIEWS_DIR,
    safe_names,
)
from ..progress import JobContext
from .sheet import RENDER_LABEL, REPROJECTION_LABEL, contact_sheet


def render_multicam(
    source: Any,
    cameras: list,
    out: Path,
    ctx: JobContext,
    *,
    fps: float,
    frame_range: tuple[int, int] | None = None,
    instants: int = 4,
    source_path: Path | None = None,
    renders: dict[str, list[Path]] | None = None,
    render_cluster: dict[str, Any] | None = None,
    yaw_degrees: float = 0.0,
    display: Any = None,
) -> Path:
    """Write the multicam folder (see the module docstring) atomically; returns ``out``.

    ``renders`` (camera name → Blender frames, see :func:`check_renders`) are copied to
    ``renders/<camera>/``, encoded as ``<camera>_render.mp4`` and shown in the contact
    sheet under the camera's reprojected row; ``render_cluster`` is where they ran (the
    Ray record of ``render-cluster``; None: one machine), kept in the manifest. ``display`` (an
    :class:`engine.colour.DisplayTransform`; default Blender's AgX through ``$OCIO``)
    tone-maps HDR frames for the MP4s and the contact sheet.
    """
    import shutil

    from ..cameras import save_cameras
    from ..colour import display_transform
    from ..media import atomic_output_dir, list_frames, read_manifest, write_manifest
    from ..views.render import render_views

    folders = safe_names(cam.name for cam in cameras)
    display = display or display_transform()
    with atomic_output_dir(out) as tmp:
        # 1. Reprojected clips (one sampling map per camera, built once).
        render_views(
            source, cameras, tmp / VIEWS_DIR, ctx, source_path=source_path, yaw_degrees=yaw_degrees
        )
        views = read_manifest(tmp / VIEWS_DIR)
        clips = {cam.name: list_frames(tmp / VIEWS_DIR / folders[cam.name]) for cam in cameras}
        rendered: dict[str, list[Path]] = {}
        for cam in cameras if renders else []:
            (tmp / RENDERS_DIR / folders[cam.name]).mkdir(parents=True)
            rendered[cam.name] = [
                Path(shutil.copy2(p, tmp / RENDERS_DIR / folders[cam.name] / p.name))
                for p in renders[cam.name]
            ]
        # 2. One MP4 per camera, all the same length.
        with ctx.timed("encode"):
            for index, cam in enumerate(cameras):
                ctx.step("encode", index + 1, len(cameras))
                encode_clip(clips[cam.name], tmp / f"{folders[cam.name]}.mp4", fps, display)
                if cam.name in rendered:
                    clip = tmp / f"{folders[cam.name]}_render.mp4"
                    encode_clip(rendered[cam.name], clip, fps, display)
        # 3. Contact sheet and cameras.json.
        with ctx.timed("contact_sheet"):
            rows = []
            for cam in cameras:
                rows.append((f"{cam.name}: {REPROJECTION_LABEL}", clips[cam.name]))
                if cam.name in rendered:
                    rows.append((f"{cam.name}: {RENDER_LABEL}", rendered[cam.name]))
            sheet = contact_sheet(rows, instants, fps, display)
            from ..media import write_image

            write_image(tmp / SHEET_NAME, sheet)
        save_cameras(cameras, tmp / CAMERAS_NAME, with_opencv=True)
        write_manifest(
            tmp,
            {
                "kind": KIND_MULTICAM,
                "frames": views["frames"],
                "fps": fps,
                "loop": views["loop"],
                "blender_frame_range": list(frame_range) if frame_range else None,
                "yaw_degrees": yaw_degrees,
                "sync": "frame n of every clip is loop frame n (Blender frame start + n)",
                "cameras": [
                    {
                        "name": c.name,
                        "folder": folders[c.name],
                        "frames": f"{VIEWS_DIR}/{folders[c.name]}",
                        "video": f"{folders[c.name]}.mp4",
                        "width": c.width,
                        "height": c.height,
                        "render_frames": f"{RENDERS_DIR}/{folders[c.name]}" if rendered else None,
                        "render_video": f"{folders[c.name]}_render.mp4" if rendered else None,
                    }
                    for c in cameras
                ],
                "render_cluster": render_cluster,
                "contact_sheet": SHEET_NAME,
                "cameras_file": CAMERAS_NAME,
                "reference_camera": cameras[0].name,
                "source": str(source_path) if source_path else None,
                "preview": display.describe(),
                "timings": ctx.timings,
            },
        )
    return out


def encode_clip(frames: list[Path], path: Path, fps: float, display: Any = None) -> Path:
    """Encode a frame folder's files as an 8-bit H.264 preview (odd sizes padded by 1 px)."""
    import numpy as np

    from ..colour import display_transform
    from ..media import PREVIEW_PRESET, encode_mp4, read_image

    display = display or display_transform()

    def shown(p: Path) -> np.ndarray:
        frame = display.to_uint8(read_image(p))
        h, w = frame.shape[:2]
        return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")

    return encode_mp4((shown(p) for p in frames), path, fps, preset=PREVIEW_PRESET)
