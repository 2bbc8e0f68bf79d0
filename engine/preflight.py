"""Preflight: will a job fit in memory and on disk? Checked before it starts, with numbers.

A job that cannot fit is refused in one line that shows the estimate, what is available
and what to change (:class:`~engine.errors.BadInput`, exit 2) — instead of a MemoryError
traceback an hour in, or a full disk. Estimates are deliberately close to what a job
really uses (measured, see the constants), so a job that fits is never refused.

Standard library only: image sizes come from the files' headers (PNG, JPEG, OpenEXR,
Radiance HDR), read before a single pixel is decoded.
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BadInput

#: OpenCV refuses to decode images above 2**30 pixels (CV_IO_MAX_IMAGE_PIXELS).
MAX_DECODE_PIXELS = 2**30
#: Memory we leave to everything else when judging what a job may use.
MEMORY_RESERVE = 256 * 2**20
#: Decoded bytes per pixel of a float RGB image (EXR, HDR).
FLOAT_RGB_BYTES = 12
#: Disk space we leave free after a job's estimated output.
DISK_RESERVE = 64 * 2**20


@dataclass(frozen=True)
class ImageHeader:
    """An image file's size and its decoded bytes per pixel (after expansion to RGB)."""

    width: int
    height: int
    bytes_per_pixel: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def human_bytes(count: float) -> str:
    """``1.6 GB`` (decimal units, as disk tools show them)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(count) < 1000 or unit == "PB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} PB"


# ----------------------------------------------------------------------------- memory


def available_memory() -> int | None:
    """Bytes this process may still allocate: MemAvailable, bounded by a cgroup limit.

    None where the system does not say (then memory is not judged).
    """
    found: list[int] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError):
        pass
    found += _cgroup_headroom()
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return min(found)


def _cgroup_headroom() -> list[int]:
    """What a cgroup v2 memory limit leaves (containers), as a one-item list, or []."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        return []
    if limit == "max":
        return []
    return [max(int(limit) - used, 0)]


def require_memory(needed: int, what: str, fix: str) -> None:
    """Refuse ``what`` if its estimated ``needed`` bytes exceed the memory available."""
    available = available_memory()
    if available is None:
        return
    usable = max(available - MEMORY_RESERVE, 0)
    if needed > usable:
        raise BadInput(
            f"{what} needs about {human_bytes(needed)} of memory; "
            f"{human_bytes(available)} is available",
            fix,
        )


# ----------------------------------------------------------------------------- disk


def free_disk(folder: str | os.PathLike[str]) -> int:
    """Free bytes on the disk holding ``folder`` (for an unprivileged writer)."""
    return shutil.disk_usage(folder).free


def require_disk(needed: int, folder: str | os.PathLike[str], what: str, fix: str) -> None:
    """Refuse ``what`` if its estimated ``needed`` bytes exceed the free space at ``folder``."""
    free = free_disk(folder)
    if needed + DISK_RESERVE > free:
        raise BadInput(
            f"{what} needs about {human_bytes(needed)} on the disk of {folder}; "
            f"{human_bytes(free)} is free",
            fix,
        )


# ----------------------------------------------------------------------------- headers


def image_header(path: str | os.PathLike[str]) -> ImageHeader | None:
    """Width, height and decoded bytes per pixel from the file's header; None if unknown."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64 * 1024)
    except OSError:
        return None
    for reader in (_png, _exr, _hdr, _jpeg):
        try:
            found = reader(head)
        except (struct.error, ValueError, IndexError):
            found = None
        if found is not None:
            return found
    return None


def check_decodable(path: str | os.PathLike[str], shown: str) -> ImageHeader | None:
    """Refuse an image whose pixels would not fit in memory once decoded (before decoding)."""
    header = image_header(path)
    if header is None:
        return None
    if header.width <= 0 or header.height <= 0:
        raise BadInput(f"image {shown} says it is {header.width}x{header.height} pixels")
    if header.pixels > MAX_DECODE_PIXELS:
        raise BadInput(
            f"image {shown} is {header.width}x{header.height} = {header.pixels:,} pixels; "
            f"images above {MAX_DECODE_PIXELS:,} pixels cannot be decoded",
            "use a smaller image (16384x8192 is 134 million pixels)",
        )
    # The decoder's buffer and our RGB copy of it.
    require_memory(
        2 * header.pixels * header.bytes_per_pixel,
        f"reading {header.width}x{header.height} image {shown}",
        "use a smaller image, or close other programs",
    )
    return header


def _png(head: bytes) -> ImageHeader | None:
    if not head.startswith(b"\x89PNG\r\n\x1a\n") or head[12:16] != b"IHDR":
        return None
    width, height, depth = struct.unpack(">IIB", head[16:25])
    return ImageHeader(width, height, 3 * (2 if depth == 16 else 1))


def _exr(head: bytes) -> ImageHeader | None:
    if not head.startswith(b"\x76\x2f\x31\x01"):
        return None
    at = 8
    while at < len(head) and head[at] != 0:
        name_end = head.index(b"\0", at)
        type_end = head.index(b"\0", name_end + 1)
        (size,) = struct.unpack("<i", head[type_end + 1 : type_end + 5])
        value = head[type_end + 5 : type_end + 5 + size]
        if head[at:name_end] == b"dataWindow":
            x0, y0, x1, y1 = struct.unpack("<iiii", value)
            return ImageHeader(x1 - x0 + 1, y1 - y0 + 1, FLOAT_RGB_BYTES)  # float32 RGB
        at = type_end + 5 + size
    return None


def _hdr(head: bytes) -> ImageHeader | None:
    if not (head.startswith(b"#?RADIANCE") or head.startswith(b"#?RGBE")):
        return None
    lines = head.split(b"\n")
    blank = lines.index(b"")
    parts = lines[blank + 1].split()
    sizes = {parts[0][1:]: int(parts[1]), parts[2][1:]: int(parts[3])}
    return ImageHeader(sizes[b"X"], sizes[b"Y"], FLOAT_RGB_BYTES)


def _jpeg(head: bytes) -> ImageHeader | None:
    if not head.startswith(b"\xff\xd8"):
        return None
    at = 2
    while at + 9 < len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        (length,) = struct.unpack(">H", head[at + 2 : at + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", head[at + 5 : at + 9])
            return ImageHeader(width, height, 3)
        at += 2 + length
    return None


# ----------------------------------------------------------------------------- estimates
# Peak memory per pixel, measured as the peak RSS of ``python -m engine …`` over the
# imported engine (1024×512 and 4096×2048 inputs, fitted as fixed + per pixel): animate
# (backward cubic sampling, commit eaa2d3d) 203 B/px for float (EXR/HDR) input and
# 156 B/px for 8-bit, plus about 85–123 MB; a camera's sampling map 34–35 B/px while it
# is built; cube faces 21–25 B/px.

#: What every job holds once the engine is imported (numpy, OpenCV, numba).
ENGINE_BASE = 128 * 2**20
#: animate: bytes per panorama pixel (float frames, integer frames) and a fixed part.
ANIMATE_FLOAT_BPP = 205
ANIMATE_INT_BPP = 160
ANIMATE_FIXED = 128 * 2**20
#: views/multicam: a camera map while it is built, and what a built map keeps.
CAMERA_BUILD_BPP = 36
CAMERA_KEPT_BPP = 12
#: export --cubemap: six faces, their maps and the two sheets, per face pixel.
CUBEMAP_BPP = 48
#: An 8-bit preview MP4 at CRF 18 stays well under this many bytes per pixel per frame.
PREVIEW_BYTES_PER_PIXEL = 0.1


def animate_memory(width: int, height: int, float_frames: bool) -> int:
    """Peak bytes ``animate`` needs for a ``width``×``height`` panorama."""
    per_pixel = ANIMATE_FLOAT_BPP if float_frames else ANIMATE_INT_BPP
    return ENGINE_BASE + ANIMATE_FIXED + width * height * per_pixel


def camera_views_memory(camera_pixels: list[int], panorama_bytes: int) -> int:
    """Peak bytes of ``views``/``multicam``: every camera's kept map, the largest one's
    build, and the panorama frame twice (read and padded)."""
    largest = max(camera_pixels, default=0)
    kept = sum(camera_pixels) * CAMERA_KEPT_BPP
    return ENGINE_BASE + kept + largest * CAMERA_BUILD_BPP + 2 * panorama_bytes


def cubemap_memory(face_size: int) -> int:
    """Peak bytes of cube faces and sheets of side ``face_size``."""
    return ENGINE_BASE + 6 * face_size * face_size * CUBEMAP_BPP


def require_animate_memory(width: int, height: int, float_frames: bool) -> None:
    """Refuse an ``animate`` job whose panorama cannot fit in memory."""
    require_memory(
        animate_memory(width, height, float_frames),
        f"animating a {width}x{height} panorama",
        "use a smaller panorama (resize it), or close other programs",
    )


def require_animate_disk(
    width: int, height: int, float_frames: bool, frames: int, out: Path, frame_bytes: Any
) -> None:
    """Refuse an ``animate`` job whose frames and preview cannot fit on the disk of ``out``.

    ``frame_bytes()`` gives one frame's size as written (called only when the frames
    could not fit uncompressed, since it encodes a frame).
    """
    preview = int(width * height * PREVIEW_BYTES_PER_PIXEL)
    raw = width * height * (6 if float_frames else 3)
    if frames * (raw + preview) + DISK_RESERVE <= free_disk(out.parent):
        return  # fits even uncompressed: no need to measure a compressed frame
    per_frame = int(frame_bytes()) + preview
    require_disk(
        frames * per_frame,
        out.parent,
        f"{frames:,} frames of {width}x{height} (about {human_bytes(per_frame)} each)",
        "shorten --seconds or lower --fps, use a smaller panorama, or choose --out on a "
        "larger disk",
    )


def require_camera_views_fit(
    camera_pixels: list[int], first_frame: Path, frames: int, out: Path, what: str
) -> None:
    """Refuse a ``views``/``multicam`` job that cannot fit in memory or on disk.

    The frames' size on disk is estimated from the panorama's own first frame: the
    cameras see the same picture, so they compress about as well.
    """
    header = image_header(first_frame)
    if header is None:
        return
    float_frames = header.bytes_per_pixel == FLOAT_RGB_BYTES
    largest = max(camera_pixels, default=0)
    require_memory(
        camera_views_memory(camera_pixels, header.pixels * header.bytes_per_pixel),
        f"{what} of {len(camera_pixels)} camera(s), the largest {largest:,} pixels",
        "lower the cameras' resolution (or render percentage), or use fewer cameras",
    )
    raw_per_pixel = 6 if float_frames else header.bytes_per_pixel
    raw = frames * sum(camera_pixels) * (raw_per_pixel + PREVIEW_BYTES_PER_PIXEL)
    if raw + DISK_RESERVE <= free_disk(out.parent):
        return
    ratio = min(1.0, os.path.getsize(first_frame) / max(header.pixels * raw_per_pixel, 1))
    require_disk(
        int(raw * ratio),
        out.parent,
        f"{what}: {frames:,} frames × {len(camera_pixels)} camera(s)",
        "lower the cameras' resolution, use fewer cameras or frames, or choose --out on a "
        "larger disk",
    )


def require_export_fits(
    size: tuple[int, int],
    frames: int,
    fps: float,
    max_kbps: int,
    face_size: int | None,
    video_copies: int,
    out: Path,
) -> None:
    """Refuse an ``export`` that cannot fit: cube faces in memory, its files on disk.

    The video is estimated at :data:`PREVIEW_BYTES_PER_PIXEL`, capped by the encoder's
    maximum bit rate (``max_kbps``); ``video_copies`` is 2 when the WebXR package holds
    a second copy.
    """
    if face_size is not None:
        require_memory(
            cubemap_memory(face_size),
            f"cube faces of {face_size:,}x{face_size:,} pixels",
            "lower --face-size (the default is a quarter of the panorama's width)",
        )
    width, height = size
    capped = frames / fps * max_kbps * 1000 / 8
    video = min(capped, frames * width * height * PREVIEW_BYTES_PER_PIXEL)
    cube = 0 if face_size is None else 6 * face_size * face_size * 6 * 3  # faces + sheets
    require_disk(
        int(video_copies * video + cube),
        out.parent,
        f"exporting {frames:,} frames of {width}x{height}",
        "export a smaller --size or --face-size, or choose --out on a larger disk",
    )
