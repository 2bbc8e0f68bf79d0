"""``python -m engine motion VIDEO --out motion.npz``: motion learned from a real clip.

VIDEO is an MP4 (its frame rate read from the file; ``--fps`` overrides it) or a folder
of numbered frames (``--fps`` required), equirect (2:1) or perspective. The result is the
``.npz`` spectral volume ``animate --motion`` reads, frequencies in hertz, made by
:mod:`engine.animate.clip`:

- an equirect clip animates a panorama of its own size (``--region MASK``, of that size,
  limits where);
- a perspective clip needs ``--region MASK``: a 2:1 mask the size of the panorama to
  animate; its white part gets the clip's motion, tiled and wrapping across the seam.

The volume records where it came from (clip path and SHA-256, frames, fps); ``animate``
copies that into its manifest. Bad input (a clip of fewer than 2 frames, frames of
different sizes, a region of the wrong size, an existing output…) is refused in one line
before anything is written; the file is written to a hidden temporary sibling and renamed
into place whole.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BadInput
from .progress import JobContext

HELP = "learn a looping motion (.npz for animate --motion) from a video clip"

#: Suffixes read as a video file; anything else must be a folder of frames.
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
#: The stage names reported as progress.
STAGES = ("read clip", "trajectories", "spectrum", "write")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", type=Path, help="an MP4 or a folder of numbered frames")
    parser.add_argument("--out", required=True, type=Path, help="the motion file to write (.npz)")
    parser.add_argument(
        "--region",
        type=Path,
        help="mask (white = moves): where the motion goes; required for a perspective clip, "
        "whose mask is the panorama's size",
    )
    parser.add_argument(
        "--fps", type=float, help="frame rate of a folder of frames (an MP4's own rate otherwise)"
    )
    parser.add_argument(
        "--size",
        type=parse_size,
        help="WxH of the panorama an equirect clip's motion is for (default: the clip's size)",
    )
    parser.add_argument(
        "--projection",
        choices=("auto", "equirect", "perspective"),
        default="auto",
        help="what the clip shows: auto = equirect if 2:1, else perspective",
    )


def run(args: argparse.Namespace, ctx: JobContext) -> Path:
    return learn_motion(
        args.video,
        args.out,
        region_path=args.region,
        fps=args.fps,
        projection=args.projection,
        size=args.size,
        ctx=ctx,
    )


def parse_size(text: str) -> tuple[int, int]:
    """``"4096x2048"`` → (4096, 2048); a 2:1 size of at least 4x2."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}") from None
    if width != 2 * height or height < 2:
        raise argparse.ArgumentTypeError(f"size must be 2:1 and at least 4x2, got {text}")
    return width, height


def learn_motion(
    video: Path,
    out: Path,
    *,
    region_path: Path | None = None,
    fps: float | None = None,
    projection: str = "auto",
    size: tuple[int, int] | None = None,
    ctx: JobContext | None = None,
) -> Path:
    """Write the spectral volume of ``video``'s motion to ``out``; returns ``out``.

    ``size`` (width, height) is the panorama an equirect clip's motion is for (default:
    the clip's own size); a perspective clip's panorama is its region mask's size.
    """
    import numpy as np

    from .animate import clip
    from .animate.spectral import SpectralVolume, check_volume

    ctx = ctx or JobContext()
    video, out = Path(video), Path(out)
    # 1. Check inputs (cheap ones first); nothing is written before all of them pass.
    check_motion_output(out)
    opened = open_clip(video, fps)
    width, height = opened.size
    equirect = is_equirect(width, height, projection, video)
    if size is not None and not equirect:
        raise BadInput("--size is for an equirect clip; a perspective clip takes --region's size")
    pano_w, pano_h = size or (width, height)
    region = read_region(region_path, pano_w, pano_h, equirect) if region_path else None
    if not equirect and region is None:
        raise BadInput(
            f"clip {video} is perspective ({width}x{height}): --region MASK must say where on "
            "the panorama its motion goes (a 2:1 mask the size of the panorama)"
        )
    if not equirect:
        pano_h, pano_w = region.shape  # the panorama is the region mask's size
    scale = clip.analysis_scale(width)
    gray = [clip.analysis_gray(frame, scale) for frame in opened.frames(ctx)]
    if len(gray) < 2:
        raise BadInput(f"clip {video} has {len(gray)} frame; motion needs at least 2")
    ctx.progress(STAGES[0], 1, len(STAGES))
    # 2. Trajectories from the first frame (flow accumulated, then refined against it).
    with ctx.timed("trajectories"):
        motion = clip.trajectories(gray, wrap=equirect)
    ctx.progress(STAGES[1], 2, len(STAGES))
    ctx.cancel.check()
    # 3. Temporal spectrum: the K strongest harmonics, in hertz; onto the panorama grid.
    with ctx.timed("spectrum"):
        spec = clip.clip_spectrum(motion, opened.fps, scale)
        moving = clip.moving_mask(spec.moving, clip.changing_pixels(gray))
        spec = clip.ClipSpectrum(spec.coefficients, spec.frequencies, scale, moving, spec.energy)
        if equirect:
            coefficients = clip.equirect_coefficients(spec, pano_w)
            amplitude = clip.equirect_amplitude(spec, pano_h, pano_w)
            if region is not None:
                amplitude = amplitude * region
        else:
            coefficients = clip.perspective_coefficients(spec, pano_w)
            amplitude = region
    ctx.progress(STAGES[2], 3, len(STAGES))
    source = {
        "clip": str(video.resolve()),
        "sha256": opened.sha256(),
        "frames": len(gray),
        "fps": opened.fps,
        "size": [width, height],
        "projection": "equirect" if equirect else "perspective",
        "region": str(region_path) if region_path else None,
        "energy_kept": round(spec.energy, 6),
    }
    volume = check_volume(
        SpectralVolume(
            coefficients,
            spec.frequencies,
            np.ascontiguousarray(amplitude, dtype=np.float32),
            "clip",
            {"source": source},
        ),
        f"motion of clip {video}",
    )
    # 4. Write whole: a hidden temporary sibling renamed into place.
    write_motion_file(out, volume)
    ctx.progress(STAGES[3], 4, len(STAGES))
    return out


# --------------------------------------------------------------------------- inputs


def check_motion_output(out: Path) -> None:
    if out.exists():
        raise BadInput(f"output {out} already exists; choose a new name or remove it")
    if not out.parent.is_dir():
        raise BadInput(f"output folder {out.parent} does not exist")
    if out.suffix.lower() != ".npz":
        raise BadInput(f"output {out} must end in .npz (the motion file animate --motion reads)")


def check_fps(fps: float | None, video: Path) -> float:
    if fps is None and not video.is_dir():
        raise BadInput(f"video {video} does not state its frame rate: give --fps")
    if fps is None:
        raise BadInput(f"clip {video} is a folder of frames: --fps must give its frame rate")
    if not (math.isfinite(fps) and fps > 0):
        raise BadInput(f"--fps must be a positive number, got {fps}")
    return float(fps)


@dataclass
class OpenedClip:
    """A clip whose size and frame rate are known; its frames are read one at a time."""

    path: Path
    size: tuple[int, int]  # (width, height)
    fps: float
    paths: list[Path] | None  # a folder's frame files; None for a video file

    def frames(self, ctx: JobContext) -> Iterator[Any]:
        """Every frame (RGB array), checked to be of the first frame's size."""
        from .media import read_image

        if self.paths is None:
            yield from video_frames(self.path)
            return
        for index, path in enumerate(self.paths):
            ctx.cancel.check()
            frame = read_image(path)
            if (frame.shape[1], frame.shape[0]) != self.size:
                raise BadInput(
                    f"clip {self.path}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                    f"frame 0 is {self.size[0]}x{self.size[1]}; every frame must be the same size"
                )
            yield frame

    def sha256(self) -> str:
        """Of the video file; of a folder, over its frames in order (name, then bytes)."""
        return file_sha256(self.path) if self.paths is None else folder_sha256(self.paths)


def open_clip(video: Path, fps: float | None) -> OpenedClip:
    """The clip's size and frame rate, from its first frame or the video's header."""
    from .media import list_frames, read_image

    if video.is_dir():
        fps = check_fps(fps, video)
        paths = list_frames(video)
        if len(paths) < 2:
            raise BadInput(f"clip {video} has {len(paths)} frame; motion needs at least 2")
        first = read_image(paths[0])
        return OpenedClip(video, (int(first.shape[1]), int(first.shape[0])), fps, paths)
    if video.is_file() and video.suffix.lower() in VIDEO_SUFFIXES:
        size, file_fps = video_header(video)
        return OpenedClip(video, size, check_fps(fps if fps is not None else file_fps, video), None)
    if not video.exists():
        raise BadInput(f"clip not found: {video}")
    raise BadInput(
        f"clip {video} is neither a folder of frames nor a video ({', '.join(VIDEO_SUFFIXES)})"
    )


def video_header(path: Path) -> tuple[tuple[int, int], float]:
    """(width, height) and frame rate of a video file, via the bundled ffmpeg."""
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
        reader.close()
        width, height = meta["size"]
    except (OSError, RuntimeError, StopIteration, KeyError) as exc:
        raise BadInput(f"cannot read video {path}: {exc}") from None
    return (int(width), int(height)), float(meta.get("fps") or 0.0)


def video_frames(path: Path) -> Iterator[Any]:
    """A video file's frames as 8-bit RGB arrays, one at a time."""
    import imageio_ffmpeg
    import numpy as np

    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    width, height = next(reader)["size"]
    for buffer in reader:
        yield np.frombuffer(buffer, np.uint8).reshape(height, width, 3)


def is_equirect(width: int, height: int, projection: str, video: Path) -> bool:
    if projection == "perspective":
        return False
    if width == 2 * height:
        return True
    if projection == "equirect":
        raise BadInput(f"clip {video} is {width}x{height}; an equirect clip must be 2:1")
    return False


def read_region(path: Path, width: int, height: int, equirect: bool) -> Any:
    """The region mask as (H, W) float32 in [0, 1]; refused if of the wrong size or empty."""
    import numpy as np

    from .media import read_image

    if not path.is_file():
        raise BadInput(f"region mask not found: {path}")
    mask = read_image(path)
    mh, mw = mask.shape[:2]
    if equirect and (mh, mw) != (height, width):
        raise BadInput(
            f"region {path} is {mw}x{mh}; for this equirect clip it must be {width}x{height}"
        )
    if not equirect and (mw != 2 * mh or mh < 2):
        raise BadInput(f"region {path} is {mw}x{mh}; it must be a 2:1 mask of the panorama")
    if mask.dtype.kind == "f":
        if not np.all(np.isfinite(mask)):
            raise BadInput(f"region {path} contains NaN or infinite values")
        values = np.clip(mask, 0.0, 1.0)
    else:
        values = mask.astype(np.float32) / np.float32(np.iinfo(mask.dtype).max)
    region = values.mean(axis=2).astype(np.float32)
    if not np.any(region > 0):
        raise BadInput(f"region {path} is black everywhere: nothing would move")
    return region


# --------------------------------------------------------------------------- output


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_sha256(paths: list[Path]) -> str:
    """SHA-256 over the frames in order: each file's name, then its bytes."""
    import hashlib

    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode("utf-8") + b"\0")
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def write_motion_file(out: Path, volume: Any) -> None:
    """Save ``volume`` at ``out`` whole: written beside it under a hidden name, then renamed."""
    import os
    import tempfile

    from .animate.spectral import save_volume

    fd, temp = tempfile.mkstemp(prefix=f".{out.name}.partial-", suffix=".npz", dir=out.parent)
    os.close(fd)
    try:
        save_volume(temp, volume)
        if out.exists():
            raise BadInput(f"output {out} appeared while the motion was computed; not replaced")
        os.replace(temp, out)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
