"""``python -m engine multicam``: every camera of a scene, in sync, from a looping panorama.

Output folder::

    views/<camera>/frame_000000.png …   the panorama reprojected into each camera
                                        (``engine views``; same count, same numbers)
    renders/<camera>/frame_000000.png … with ``--renders``: Blender's own renders of the
                                        scene through each camera (same numbers)
    <camera>.mp4, <camera>_render.mp4   one clip per camera, all of equal length
    contact_sheet.png                   rows = cameras (reprojection, then render),
                                        columns = a few instants; labelled: camera
                                        names and row kinds on the left, frame and
                                        time of each column on top
    cameras.json                        Blender values + OpenCV K, camera-to-world and
                                        poses relative to the first (reference) camera
    manifest.json

Frame n of every clip shows the same instant of the loop. With ``--frame-range START
END`` (Blender's scene frames) the range must span exactly the loop, so Blender frame
START + n is loop frame n; anything else would desynchronise the renders.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .contract import (
    CAMERAS_NAME,
    KIND_BLENDER_RENDERS,
    KIND_MULTICAM,
    RENDERS_DIR,
    SHEET_NAME,
    VIEWS_DIR,
    add_yaw_argument,
    check_frame_range,
    safe_names,
)
from .jobs import JobContext

HELP = "render every camera in sync from a panorama: per-camera clips, MP4s, contact sheet"
#: Contact-sheet tile height in pixels and the gap between tiles.
SHEET_TILE_H = 180
SHEET_GAP = 4
#: The sheet's labels: a header row (instants) and a column (camera, which row is what).
SHEET_HEADER_H = 28
SHEET_LABEL_W = 220
REPROJECTION_LABEL = "reprojection"
RENDER_LABEL = "Blender render"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--panorama", required=True, type=Path, help="PanoLoop output folder, frame folder or image"
    )
    parser.add_argument("--cameras", required=True, type=Path, help="cameras.json from Blender")
    parser.add_argument("--out", required=True, type=Path, help="new output folder")
    parser.add_argument(
        "--frame-range",
        type=int,
        nargs=2,
        default=None,
        metavar=("START", "END"),
        help="Blender frame range the clips stand for; must span exactly the loop",
    )
    parser.add_argument(
        "--instants", type=int, default=4, help="columns of the contact sheet (default 4)"
    )
    parser.add_argument("--fps", type=float, default=None, help="clip frame rate override")
    parser.add_argument(
        "--renders",
        type=Path,
        default=None,
        help="Blender renders of the same cameras (blender_addon.render.render_cameras "
        "output): copied in, encoded, and shown under each camera's row in the contact sheet",
    )
    add_yaw_argument(parser)


def run(args: argparse.Namespace, ctx: JobContext) -> Path:
    """Check every input, then write the multicam folder atomically; returns ``--out``."""
    from .cameras import load_cameras
    from .errors import BadInput
    from .media import check_output_free, open_panorama

    # 1. Check inputs.
    check_output_free(args.out)
    source = open_panorama(args.panorama)
    cameras = load_cameras(args.cameras)
    for cam in cameras:
        kind = cam.extra.get("type", "PERSP")
        if kind != "PERSP":
            raise BadInput(
                f"camera {cam.name!r} is {kind}; multicam reprojects perspective cameras only"
            )
    if args.instants < 1:
        raise BadInput(f"--instants {args.instants} must be at least 1")
    if args.frame_range is not None:
        check_frame_range(*args.frame_range, source.count)
    fps = args.fps if args.fps is not None else source.fps
    if fps is None:
        raise BadInput(f"panorama {args.panorama} records no frame rate; pass --fps")
    if fps <= 0:
        raise BadInput(f"frame rate {fps:g} must be positive")
    renders = check_renders(args.renders, cameras, source.count) if args.renders else None
    # 2. Render.
    return render_multicam(
        source,
        cameras,
        args.out,
        ctx,
        fps=float(fps),
        frame_range=tuple(args.frame_range) if args.frame_range else None,
        instants=args.instants,
        source_path=args.panorama,
        renders=renders,
        yaw_degrees=args.yaw,
    )


def check_renders(folder: Path, cameras: list, loop_frames: int) -> dict[str, list[Path]]:
    """The Blender render folders of ``cameras``, each exactly one loop long."""
    from .errors import BadInput
    from .media import list_frames, read_manifest

    manifest = read_manifest(folder, kind=KIND_BLENDER_RENDERS)
    recorded = {c["name"]: c.get("folder") for c in manifest.get("cameras") or []}
    folders = safe_names(cam.name for cam in cameras)
    clips = {}
    for cam in cameras:
        sub = folder / (recorded.get(cam.name) or folders[cam.name])
        if not sub.is_dir():
            raise BadInput(f"renders in {folder} have no folder for camera {cam.name!r}")
        clips[cam.name] = list_frames(sub)
        if len(clips[cam.name]) != loop_frames:
            raise BadInput(
                f"camera {cam.name!r} has {len(clips[cam.name])} rendered frames in {folder}; "
                f"the loop has {loop_frames}"
            )
    return clips


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
    yaw_degrees: float = 0.0,
) -> Path:
    """Write the multicam folder (see the module docstring) atomically; returns ``out``.

    ``renders`` (camera name → Blender frames, see :func:`check_renders`) are copied to
    ``renders/<camera>/``, encoded as ``<camera>_render.mp4`` and shown in the contact
    sheet under the camera's reprojected row.
    """
    import shutil

    from .cameras import save_cameras
    from .media import atomic_output_dir, list_frames, read_manifest, write_manifest
    from .views import render_views

    folders = safe_names(cam.name for cam in cameras)
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
                encode_clip(clips[cam.name], tmp / f"{folders[cam.name]}.mp4", fps)
                if cam.name in rendered:
                    encode_clip(rendered[cam.name], tmp / f"{folders[cam.name]}_render.mp4", fps)
        # 3. Contact sheet and cameras.json.
        with ctx.timed("contact_sheet"):
            rows = []
            for cam in cameras:
                rows.append((f"{cam.name}: {REPROJECTION_LABEL}", clips[cam.name]))
                if cam.name in rendered:
                    rows.append((f"{cam.name}: {RENDER_LABEL}", rendered[cam.name]))
            sheet = contact_sheet(rows, instants, fps)
            from .media import write_image

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
                "contact_sheet": SHEET_NAME,
                "cameras_file": CAMERAS_NAME,
                "reference_camera": cameras[0].name,
                "source": str(source_path) if source_path else None,
                "timings": ctx.timings,
            },
        )
    return out


def encode_clip(frames: list[Path], path: Path, fps: float) -> Path:
    """Encode a frame folder's files as an 8-bit H.264 preview (odd sizes padded by 1 px)."""
    import numpy as np

    from .media import encode_mp4, read_image, to_display_uint8

    def display(p: Path) -> np.ndarray:
        frame = to_display_uint8(read_image(p))
        h, w = frame.shape[:2]
        return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")

    return encode_mp4((display(p) for p in frames), path, fps)


def contact_sheet(rows: list[tuple[str, list[Path]]], instants: int = 4, fps: float = 0.0) -> Any:
    """A labelled grid (8-bit RGB): one row per ``(label, frames)``, ``instants`` columns
    spread over the loop.

    Every row samples the same frame numbers, so a column is one instant for all cameras.
    The header names each column's frame and time (``fps`` > 0); the left column names
    each row (camera, and whether it is the reprojection or Blender's render).
    """
    import cv2
    import numpy as np

    from .media import read_image, to_display_uint8

    count = min(len(frames) for _, frames in rows)
    picks = np.unique(np.linspace(0, count - 1, min(instants, count)).round().astype(int))
    grid = []
    widths = []
    for label, frames in rows:
        tiles = []
        for i in picks:
            tile = to_display_uint8(read_image(frames[i]))
            scale = SHEET_TILE_H / tile.shape[0]
            size = (max(1, round(tile.shape[1] * scale)), SHEET_TILE_H)
            tiles.append(cv2.resize(tile, size, interpolation=cv2.INTER_AREA))
            tiles.append(np.zeros((SHEET_TILE_H, SHEET_GAP, 3), np.uint8))
        widths = [t.shape[1] for t in tiles[0::2]]
        row = np.concatenate(tiles[:-1], axis=1)
        grid.append(np.concatenate([_label_tile(label, SHEET_TILE_H), row], axis=1))
    width = max(r.shape[1] for r in grid)
    padded = [np.pad(r, ((0, SHEET_GAP), (0, width - r.shape[1]), (0, 0))) for r in grid]
    header = _header(picks, widths, width, fps)
    return np.concatenate([header, *padded], axis=0)[:-SHEET_GAP]


def _label_tile(text: str, height: int) -> Any:
    """A dark tile of :data:`SHEET_LABEL_W` with ``text`` wrapped on up to four lines."""
    import cv2
    import numpy as np

    tile = np.full((height, SHEET_LABEL_W, 3), 24, np.uint8)
    words, lines, line = text.split(), [], ""
    for word in words:
        candidate = f"{line} {word}".strip()
        if cv2.getTextSize(candidate, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)[0][0] > SHEET_LABEL_W - 16:
            lines.append(line)
            line = word
        else:
            line = candidate
    lines.append(line)
    for index, text_line in enumerate(lines[:4]):
        cv2.putText(
            tile, text_line, (8, 28 + 22 * index), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
            (235, 235, 235), 1, cv2.LINE_AA,
        )  # fmt: skip
    return tile


def _header(picks: Any, widths: list[int], width: int, fps: float) -> Any:
    """The header row: over each column, the loop frame it shows and its time."""
    import cv2
    import numpy as np

    header = np.full((SHEET_HEADER_H, width, 3), 24, np.uint8)
    x = SHEET_LABEL_W
    for frame, tile_w in zip(picks, widths, strict=True):
        text = f"frame {int(frame)}" + (f"  {frame / fps:.2f} s" if fps > 0 else "")
        cv2.putText(
            header, text, (x + 6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (235, 235, 235), 1,
            cv2.LINE_AA,
        )  # fmt: skip
        x += tile_w + SHEET_GAP
    return header
