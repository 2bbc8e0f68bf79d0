"""VR export of a panorama output folder: 360° MP4, cubemaps and the WebXR package.

Reads like a pipeline: check inputs → resize and encode → tag spherical metadata →
cubemaps → WebXR package → manifest. Everything is written into a temporary sibling of
the output folder and renamed into place whole (a failure or cancel leaves nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..contract import CUBEMAP_DIR, KIND_VR_EXPORT, WEBXR_DIR, safe_name
from ..errors import BadInput
from ..preflight import require_export_fits
from ..progress import JobContext
from .h264 import Level, check_headset_video, encode_360, max_kbps
from .spherical import StereoMode, inject_spherical, read_spherical


@dataclass(frozen=True)
class ExportOptions:
    """What to export. ``size`` None keeps the panorama's size; ``fps`` None uses its own."""

    size: tuple[int, int] | None = None
    fps: float | None = None
    cubemap: bool = False
    webxr: bool = False
    face_size: int | None = None
    gltf: Path | None = None
    viewpoint: tuple[float, float, float] = (0.0, 0.0, 0.0)
    yaw_degrees: float = 0.0
    name: str | None = None
    stereo: StereoMode = "mono"
    crf: int = 18
    preset: str = "medium"
    #: How HDR frames are shown in the MP4 and the cubemap previews (engine.colour).
    view: str = "AgX"
    exposure: float = 0.0
    ocio_config: Path | None = None


def video_name(stem: str, stereo: StereoMode = "mono") -> str:
    """``<stem>_360.mp4``, ``<stem>_360_TB.mp4`` or ``_LR``: the tags players read."""
    tag = {"mono": "", "top-bottom": "_TB", "left-right": "_LR"}[stereo]
    safe = safe_name(stem, fallback="panorama")
    return f"{safe}_360{tag}.mp4"


def write_360_mp4(
    frames: Iterable[np.ndarray],
    path: Path,
    fps: float,
    level: Level,
    *,
    stereo: StereoMode = "mono",
    yaw_degrees: float = 0.0,
    crf: int = 18,
    preset: str = "medium",
) -> Path:
    """Encode 8-bit frames at ``level``, then add V2 + V1 spherical metadata → ``path``."""
    encoded = path.with_name(f".{path.stem}.untagged.mp4")
    try:
        encode_360(frames, encoded, fps, level, crf=crf, preset=preset)
        inject_spherical(encoded, path, stereo=stereo, yaw=yaw_degrees)
    finally:
        encoded.unlink(missing_ok=True)
    return path


def export_panorama(
    panorama: Path, out: Path, options: ExportOptions, ctx: JobContext | None = None
) -> Path:
    """Export the panorama at ``panorama`` (output folder, frame folder or image) to ``out``."""
    from ..colour import display_transform
    from ..media import (
        atomic_output_dir,
        check_output_free,
        open_panorama,
        read_image,
        write_manifest,
    )
    from .cubemap import write_cubemaps

    ctx = ctx or JobContext()
    stereo = options.stereo
    # 1. Check inputs: nothing is written until every one passes.
    check_output_free(out)
    if stereo not in ("mono", "top-bottom"):
        raise BadInput(f"stereo layout {stereo!r} is not mono or top-bottom")
    if stereo != "mono" and (options.cubemap or options.webxr):
        raise BadInput(f"--cubemap and --webxr take a mono panorama, not {stereo} stereo")
    source = open_panorama(panorama) if stereo == "mono" else open_stereo_frames(panorama)
    fps = options.fps if options.fps is not None else source.fps
    if fps is None:
        raise BadInput(f"panorama {panorama} records no frame rate; pass --fps")
    first = read_image(source.frames[0])
    display = display_transform(
        options.view, options.exposure, options.ocio_config, needed=first.dtype.kind == "f"
    )
    src_h, src_w = first.shape[:2]
    width, height = options.size or (src_w, src_h)
    level = check_headset_video(width, height, float(fps), stereo)
    face_size = options.face_size or max(2, (width // 4) // 2 * 2)
    if face_size <= 0 or face_size % 2:
        raise BadInput(
            f"cube face size {face_size} must be positive and even (the strip video is H.264)"
        )
    if options.gltf is not None and not options.gltf.is_file():
        raise BadInput(f"scene file not found: {options.gltf}")
    if options.gltf is not None and options.gltf.suffix.lower() != ".glb":
        raise BadInput(f"scene {options.gltf} must be a binary glTF (.glb)")
    require_export_fits(
        (width, height),
        source.count,
        float(fps),
        max_kbps(level),
        face_size if options.cubemap else None,
        2 if options.webxr else 1,
        out,
    )
    stem = options.name or _stem_of(panorama)
    resize = _resizer(src_w, src_h, width, height, stereo)

    with atomic_output_dir(out) as tmp:
        # 2. Resize, encode, tag.
        video = tmp / video_name(stem, stereo)
        frames = _display_frames(source.frames, first, resize, display.to_uint8, read_image, ctx)
        with ctx.timed("encode"):
            write_360_mp4(
                frames,
                video,
                float(fps),
                level,
                stereo=stereo,
                yaw_degrees=options.yaw_degrees,
                crf=options.crf,
                preset=options.preset,
            )
        written: dict[str, Any] = {"video": video.name}
        # 3. Cubemaps of every frame, turned with the World, and a 6×1 strip video.
        if options.cubemap:
            with ctx.timed("cubemap"):
                faces = write_cubemaps(
                    (
                        resize(first if i == 0 else read_image(p))
                        for i, p in enumerate(source.frames)
                    ),
                    source.count,
                    tmp / CUBEMAP_DIR,
                    face_size,
                    float(fps),
                    yaw_degrees=options.yaw_degrees,
                    display=display,
                    ctx=ctx,
                )
            written["cubemap"] = _under(CUBEMAP_DIR, faces)
        # 4. The WebXR package.
        if options.webxr:
            from .webxr import write_webxr_package

            ctx.step("webxr", 1, 1)
            (tmp / WEBXR_DIR).mkdir()
            with ctx.timed("webxr"):
                package = write_webxr_package(
                    tmp / WEBXR_DIR,
                    video,
                    title=stem,
                    gltf=options.gltf,
                    viewpoint=options.viewpoint,
                    yaw_degrees=options.yaw_degrees,
                )
            written["webxr"] = f"{WEBXR_DIR}/index.html"
            written["webxr_three_version"] = package["three_version"]
        # 5. Manifest: what was written and how to play it.
        info = read_spherical(video)
        write_manifest(
            tmp,
            {
                "kind": KIND_VR_EXPORT,
                "projection": "equirectangular",
                "orientation": (source.manifest or {}).get("orientation", "blender"),
                "width": width,
                "height": height,
                "frames": source.count,
                "fps": float(fps),
                "loop": source.loop,
                "stereo": stereo,
                "h264_level": level.name,
                "yaw_degrees": options.yaw_degrees,
                "spherical_boxes": info.boxes,
                "files": written,
                "source": str(panorama),
                "preview": display.describe(),
                "timings": ctx.timings,
            },
        )
    return out


def _under(folder: str, names: dict[str, Any]) -> dict[str, Any]:
    """Relative names in ``folder`` (nested dicts too; numbers pass through)."""
    return {
        k: _under(folder, v)
        if isinstance(v, dict)
        else f"{folder}/{v}"
        if isinstance(v, str)
        else v
        for k, v in names.items()
    }


def _display_frames(
    paths: list[Path],
    first: np.ndarray,
    resize: Any,
    to_display: Any,
    read: Any,
    ctx: JobContext,
) -> Iterator[np.ndarray]:
    """8-bit display frames in order, each checked against the first frame's size and type."""
    for index, path in enumerate(paths):
        ctx.step("encode", index + 1, len(paths))
        frame = first if index == 0 else read(path)
        if frame.shape != first.shape or frame.dtype != first.dtype:
            raise BadInput(
                f"frame {path} is {frame.shape[1]}x{frame.shape[0]} {frame.dtype}; "
                f"the first frame is {first.shape[1]}x{first.shape[0]} {first.dtype}"
            )
        yield to_display(resize(frame))


def open_stereo_frames(panorama: Path) -> Any:
    """A top-bottom stereo panorama folder (square frames: left eye 2:1 above right eye)."""
    from ..contract import MANIFEST_NAME, frames_folder
    from ..media import PanoramaSource, list_frames, read_image, read_manifest

    if not panorama.is_dir():
        raise BadInput(f"stereo panorama {panorama} must be a folder of frames")
    manifest = None
    folder = panorama
    if (panorama / MANIFEST_NAME).is_file():
        manifest = read_manifest(panorama)
        folder = frames_folder(panorama, manifest)
    frames = list_frames(folder)
    first = read_image(frames[0])
    height, width = first.shape[:2]
    if width != height:
        raise BadInput(
            f"top-bottom stereo frame {frames[0]} is {width}x{height}; it must be square "
            "(two 2:1 eyes stacked)"
        )
    fps = manifest.get("fps") if manifest else None
    loop = bool(manifest.get("loop", False)) if manifest else False
    return PanoramaSource(frames=frames, fps=fps, loop=loop, manifest=manifest)


def _resizer(src_w: int, src_h: int, width: int, height: int, stereo: str) -> Any:
    """Resize mono frames seamlessly; resize each eye of a top-bottom frame on its own."""
    from .resample import EquirectResizer

    if stereo == "mono":
        return EquirectResizer(src_w, src_h, width, height)
    eye = EquirectResizer(src_w, src_h // 2, width, height // 2)

    def resize_eyes(frame: np.ndarray) -> np.ndarray:
        half = frame.shape[0] // 2
        return np.concatenate([eye(frame[:half]), eye(frame[half:])], axis=0)

    return resize_eyes


def _stem_of(panorama: Path) -> str:
    return panorama.stem if panorama.is_file() else panorama.resolve().name
