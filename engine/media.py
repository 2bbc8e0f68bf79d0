"""Reading and writing frames, MP4 previews, manifests and atomically written output folders.

Frames are numpy arrays of shape (H, W, 3), RGB, row 0 at the top. Their dtype is
their kind of values and is kept end to end:

- ``uint8`` / ``uint16``: display-referred (sRGB-encoded) values, read from and written
  to PNG (JPG is read only);
- ``float32``: scene-linear values, HDR allowed (values above 1 are kept), read from
  EXR or Radiance HDR and written to EXR.

Nothing here tone-maps silently: :func:`to_display_uint8` is the one explicit,
named conversion, used only for previews.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import OpenEXR
from numba import njit

# OpenCV reads EXR only when this is set before cv2 is first imported.
os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
import cv2  # noqa: E402

from .checks import check_path, shown_path  # noqa: E402

# The output contract (names, frame naming, manifests, the atomic folder) is defined
# once in engine.contract; it is re-exported here for the engine's modules.
from .contract import (  # noqa: E402, F401
    FRAME_NAME_RE,
    FRAMES_DIR,
    IMAGE_SUFFIXES,
    MANIFEST_NAME,
    ORIENTATION,
    PREVIEW_NAME,
    atomic_output_dir,
    check_output_free,
    frame_name,
    frames_folder,
    list_frames,
    panorama_manifest,
    read_manifest,
    write_manifest,
)
from .errors import BadInput, PanoLoopError, unwritable  # noqa: E402
from .preflight import check_decodable  # noqa: E402

HALF_MAX = 65504.0


# --------------------------------------------------------------------------- frames

#: EXR compression codecs ``--exr-codec`` offers, by OpenEXR's names. DWAA/DWAB are lossy
#: (DCT of a perceptual encoding, like JPEG for HDR, values above 1 kept; quantised at
#: :data:`DWA_LEVEL`); the rest are
#: lossless on half floats. The default was chosen by bench/animate.py's measurement of
#: size and writing time per 2048×1024 frame (see the README's benchmark table).
EXR_CODECS = {
    "dwab": OpenEXR.DWAB_COMPRESSION,
    "dwaa": OpenEXR.DWAA_COMPRESSION,
    "piz": OpenEXR.PIZ_COMPRESSION,
    "zip": OpenEXR.ZIP_COMPRESSION,
    "rle": OpenEXR.RLE_COMPRESSION,
    "none": OpenEXR.NO_COMPRESSION,
}
#: What :func:`write_image` uses unless told: lossless, the fastest lossless codec to
#: write. ``animate`` frames default to :data:`FRAMES_EXR_CODEC` instead (its ``--exr-codec``).
DEFAULT_EXR_CODEC = "piz"
FRAMES_EXR_CODEC = "dwab"
#: DWAA/DWAB's quantisation (OpenEXR's ``dwaCompressionLevel``; the library's default
#: is 45): larger means coarser DCT coefficients, smaller files and less CPU to write
#: (fewer coefficients to entropy-code; the DCT itself costs the same). Measured on a
#: rendered 2048×1024 forest frame (bench/animate.py): 45 → 90 writes 12 % less CPU
#: (136 → 120 ms) and 1.73 MB instead of 2.28; relative error of values > 2⁻⁴ p99.9
#: 4.1 → 6.4 % (max 11 → 20 %), the AgX picture's PSNR 53.3 → 50.9 dB, detail
#: (Laplacian energy) 0.995 of the exact frame's.
DWA_LEVEL = 90.0


def check_exr_codec(codec: str) -> str:
    """One of :data:`EXR_CODECS`; :class:`BadInput` naming the value otherwise."""
    if codec not in EXR_CODECS:
        raise BadInput(f"unknown EXR codec {codec!r}; choose one of {', '.join(EXR_CODECS)}")
    return codec


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as an (H, W, 3) RGB array of its own kind of values.

    EXR and HDR come back as float32 scene-linear (HDR kept); 8-bit PNG/JPG as uint8;
    16-bit PNG as uint16. Alpha is dropped, grey is expanded to RGB.
    Raises :class:`BadInput` naming the path if it is missing or unreadable.
    """
    path = check_path(path, "image")
    if not path.is_file():
        raise BadInput(f"image file not found: {path}")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise BadInput(
            f"unsupported image type {path.suffix!r} for {path} (use EXR, HDR, PNG or JPG)"
        )
    check_decodable(path, shown_path(path))
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise BadInput(f"cannot read image {path}: the file is damaged or not an image")
    return _to_rgb(image, path)


def _to_rgb(image: np.ndarray, path: Path) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    elif image.shape[2] != 3:
        raise BadInput(f"image {path} has {image.shape[2]} channels; expected 1, 3 or 4")
    image = np.ascontiguousarray(image[:, :, ::-1])
    if image.dtype in (np.float16, np.float64):
        image = image.astype(np.float32)
    if image.dtype not in (np.uint8, np.uint16, np.float32):
        raise BadInput(f"image {path} has unsupported sample type {image.dtype}")
    return image


def frame_suffix(dtype: np.dtype) -> str:
    """The file type a frame of this dtype is written as: float → .exr, integers → .png."""
    return ".exr" if np.dtype(dtype).kind == "f" else ".png"


def write_image(
    path: str | os.PathLike[str], image: np.ndarray, *, exr_codec: str = DEFAULT_EXR_CODEC
) -> Path:
    """Write an (H, W, 3) RGB frame; the suffix of ``path`` must suit its dtype.

    float32 → EXR through the OpenEXR library: half floats (values clamped to ±65504,
    the half-float range; values above 1 kept), channels R, G, B, compressed with
    ``exr_codec`` (see :data:`EXR_CODECS`). uint8/uint16 → PNG.
    """
    path = check_path(path, "output file")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) frame, got shape {image.shape}")
    suffix = path.suffix.lower()
    if suffix == ".exr":
        write_exr(path, image, exr_codec)
        return path
    if suffix != ".png":
        raise ValueError(f"cannot write frames as {suffix!r}")
    # Encoded in memory and written by Python, not cv2.imwrite: a full disk or a size
    # limit then raises an OSError with its errno (imwrite only returns False).
    with open(path, "wb") as fh:
        fh.write(encode_image(image, ".png"))
    return path


def encode_image(image: np.ndarray, suffix: str) -> memoryview:
    """An (H, W, 3) RGB frame encoded in memory as ``.png`` (as written) or ``.exr``
    (OpenCV's half-float ZIP EXR: the size estimate the disk preflight uses)."""
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    if suffix == ".exr":
        bgr = np.clip(bgr, -HALF_MAX, HALF_MAX).astype(np.float32)
        params = [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_HALF]
    elif image.dtype in (np.uint8, np.uint16):
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    else:
        raise ValueError(f"PNG frames must be uint8 or uint16, got {image.dtype}")
    ok, encoded = cv2.imencode(suffix, bgr, params)
    if not ok:
        raise PanoLoopError(f"could not encode a {image.shape[1]}x{image.shape[0]} frame")
    return encoded.data


def write_exr(
    path: str | os.PathLike[str],
    image: np.ndarray,
    codec: str = DEFAULT_EXR_CODEC,
    planes: np.ndarray | None = None,
) -> np.ndarray:
    """Write an (H, W, 3) float32 frame as a half-float EXR (see :func:`write_image`);
    returns the (3, H, W) float16 planes it was converted into — ``planes`` itself when
    given and of that shape, so a thread writing frame after frame allocates them once."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) frame, got shape {image.shape}")
    if image.dtype != np.float32:
        raise ValueError(f"EXR frames must be float32, got {image.dtype}")
    if planes is None or planes.shape != (3, *image.shape[:2]) or planes.dtype != np.float16:
        planes = None
    planes = half_planes(image, planes)
    write_half_exr(Path(path), planes, check_exr_codec(codec))
    return planes


def write_half_exr(path: Path, planes: np.ndarray, codec: str) -> None:
    """Write (3, H, W) float16 planes (R, G, B, from :func:`half_planes`) as an EXR
    (DWAA/DWAB at :data:`DWA_LEVEL`)."""
    channels = dict(zip("RGB", planes, strict=True))
    header = {"compression": EXR_CODECS[codec], "type": OpenEXR.scanlineimage}
    if codec in ("dwaa", "dwab"):
        header["dwaCompressionLevel"] = DWA_LEVEL
    try:
        OpenEXR.File(header, channels).write(str(path))
    except Exception as exc:  # the binding raises a bare Exception for any I/O failure
        raise _why_write_failed(path, exc) from None


def half_planes(image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """An (H, W, 3) float32 frame as (3, H, W) float16 planes R, G, B, each contiguous (as
    OpenEXR stores channels): values clamped to ±:data:`HALF_MAX`, rounded to nearest
    even — bit for bit ``np.clip(image, -HALF_MAX, HALF_MAX).astype(np.float16)``, but in
    one compiled pass that releases the GIL (numpy's conversion plus the channel copies
    cost two to six times as much CPU, bench/animate.py).
    """
    height, width = image.shape[:2]
    if out is None:
        out = np.empty((3, height, width), np.float16)
    source = np.ascontiguousarray(image, dtype=np.float32)
    _half_rows(source.view(np.uint32), out.view(np.uint16))
    return out


@njit(cache=True, nogil=True)
def _half_rows(bits, out):
    """float32 bits (H, W, 3) → half bits (3, H, W): clamp to ±65504, round half to even."""
    height, width = bits.shape[:2]
    for y in range(height):
        for x in range(width):
            for c in range(3):
                out[c, y, x] = _to_half(bits[y, x, c])


@njit(cache=True, nogil=True, inline="always")
def _to_half(f):
    """One float32 (as its bits) → the bits of the nearest half, ties to even, clamped to
    ±65504 (the largest half); NaN stays NaN with numpy's payload."""
    sign = np.uint16((f >> np.uint32(16)) & np.uint32(0x8000))
    a = f & np.uint32(0x7FFFFFFF)
    if a > np.uint32(0x7F800000):  # NaN: its payload's top bits, kept a NaN (as numpy)
        payload = np.uint16((a & np.uint32(0x7FFFFF)) >> np.uint32(13))
        return sign | np.uint16(0x7C00) | max(payload, np.uint16(1))
    if a >= np.uint32(0x477FE000):  # ≥ 65504: clamped
        return sign | np.uint16(0x7BFF)
    if a >= np.uint32(0x38800000):  # a normal half: drop 13 mantissa bits, ties to even
        odd = (a >> np.uint32(13)) & np.uint32(1)
        rounded = a - np.uint32(0x38000000) + np.uint32(0xFFF) + odd
        return sign | np.uint16(rounded >> np.uint32(13))
    if a < np.uint32(0x33000000):  # below half the smallest subnormal: ±0
        return sign
    # Subnormal half: units of 2^-24; the float's 24-bit significand shifted right.
    exponent = a >> np.uint32(23)
    significand = (a & np.uint32(0x7FFFFF)) | np.uint32(0x800000)
    shift = np.uint32(126) - exponent  # ≥ 14 for a < 2^-14
    units = significand >> shift
    rest = significand & ((np.uint32(1) << shift) - np.uint32(1))
    halfway = np.uint32(1) << (shift - np.uint32(1))
    if rest > halfway or (rest == halfway and (units & np.uint32(1))):
        units += np.uint32(1)
    return sign | np.uint16(units)


def frame_path(folder: Path, index: int, dtype: np.dtype) -> Path:
    """The path of frame ``index`` (numbered from 0) in ``folder``: ``frame_000000.exr``."""
    return Path(folder) / frame_name(index, frame_suffix(dtype))


def to_display_uint8(frame: np.ndarray, exposure: float = 0.0) -> np.ndarray:
    """Convert a frame to 8-bit sRGB for previews only.

    float32 (scene-linear) → ``exposure`` stops, clipped to [0, 1], sRGB transfer
    function (Blender's "Standard" view). uint8 passes through; uint16 is scaled.
    """
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype == np.uint16:
        return (frame.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    linear = np.clip(frame * np.float32(2.0**exposure), 0.0, 1.0)
    srgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * np.power(linear, 1 / 2.4) - 0.055)
    return (srgb * 255.0 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------- video


#: Tags every MP4 carries: BT.709 primaries, transfer and matrix, limited range — in the
#: container and in the H.264 VUI — and the RGB→YUV conversion made with the same matrix
#: (ffmpeg's default conversion is BT.601, which would tint what the tags promise).
BT709_FILTER = "scale=out_color_matrix=bt709:out_range=tv"
BT709_X264 = "colorprim=bt709:transfer=bt709:colormatrix=bt709:range=tv"
BT709_TAGS = [
    "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709",
    "-color_range", "tv",
]  # fmt: skip
#: x264 preset of the previews (``panorama.mp4``, multicam clips): about half of
#: ``medium``'s CPU at the same CRF and no bigger files; ``superfast`` costs as much CPU
#: for files 3× as big (bench/animate.py measures them: 24 AgX frames at 1024×512).
PREVIEW_PRESET = "veryfast"


def encode_mp4(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike[str],
    fps: float,
    *,
    crf: int = 18,
    preset: str = "medium",
    extra_params: list[str] | None = None,
) -> Path:
    """Encode 8-bit sRGB frames as an H.264 MP4 (yuv420p, widely playable) at ``fps``.

    The frames are written as they are: a loop's frame 0 is not repeated at the end.
    Width and height must be even (4:2:0 chroma). The stream is tagged BT.709 (see
    :data:`BT709_TAGS`); ``-x264-params`` in ``extra_params`` are merged with the tags.
    """
    path = Path(path)
    writer = None
    count = 0
    try:
        for frame in frames:
            if frame.dtype != np.uint8:
                raise ValueError(f"encode_mp4 takes uint8 frames, got {frame.dtype}")
            if writer is None:
                h, w = frame.shape[:2]
                writer = open_mp4(
                    path, w, h, fps, crf=crf, preset=preset, extra_params=extra_params
                )
            _ffmpeg_call(writer.send, np.ascontiguousarray(frame), path=path)
            count += 1
        finished, writer = writer, None
        if finished is not None:
            _ffmpeg_call(finished.close, path=path)
    finally:
        if writer is not None:
            writer.close()
    if count == 0:
        raise ValueError("encode_mp4 got no frames")
    return path


def open_mp4(
    path: str | os.PathLike[str],
    width: int,
    height: int,
    fps: float,
    *,
    crf: int = 18,
    preset: str = "medium",
    extra_params: list[str] | None = None,
) -> Generator[None, np.ndarray | None, None]:
    """Start ffmpeg for :func:`encode_mp4`'s stream; ``send`` uint8 RGB frames, ``close``.

    Start it from a thread that is not racing a numpy BLAS call in another thread:
    ffmpeg is spawned with fork, and OpenBLAS's fork handler, run while another thread is
    inside a BLAS call, leaves OpenBLAS hung for the rest of the process (seen with the
    renderer's ``np.dot``). :class:`engine.sink.FrameSink` opens it from the renderer's
    own thread for this reason.
    """
    import imageio_ffmpeg

    if width % 2 or height % 2:
        raise BadInput(f"video size must be even for H.264, got {width}x{height}")
    params = ["-crf", str(crf), "-preset", preset, "-movflags", "+faststart"]
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=fps,
        codec="libx264",
        pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p",
        macro_block_size=1,
        output_params=params + bt709_params(extra_params or []),
        ffmpeg_log_level="error",
    )
    writer.send(None)
    return writer


def bt709_params(extra: list[str]) -> list[str]:
    """``extra`` ffmpeg options plus the BT.709 conversion and tags, one ``-x264-params``."""
    options, x264 = [], [BT709_X264]
    index = 0
    while index < len(extra):
        if extra[index] == "-x264-params" and index + 1 < len(extra):
            x264.append(extra[index + 1])
            index += 2
            continue
        options.append(extra[index])
        index += 1
    return ["-vf", BT709_FILTER, *BT709_TAGS, *options, "-x264-params", ":".join(x264)]


def _ffmpeg_call(call: Any, *args: Any, path: Path) -> Any:
    """Call into the ffmpeg writer; its failures become the real reason (a full disk…)."""
    try:
        return call(*args)
    except (OSError, RuntimeError) as exc:
        # ffmpeg writes the file itself: its failure arrives as a broken pipe or a
        # RuntimeError; say what really happened to the disk when we can tell.
        raise _why_write_failed(path, exc) from exc


#: Free bytes below which a failed write is put down to a full disk.
FULL_DISK_BYTES = 4 * 2**20


def _why_write_failed(path: Path, exc: BaseException) -> BaseException:
    """The real reason ``path`` could not be written: a full disk, a size limit, or the
    writer's own words (ffmpeg and OpenEXR do not pass the errno on)."""
    import errno

    if isinstance(exc, OSError) and unwritable(exc) is not None:
        return exc
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if free is not None and free < FULL_DISK_BYTES:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    if _file_size_limited():
        return OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(path))
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return PanoLoopError(f"could not write {path}: {first}")


def _file_size_limited() -> bool:
    try:
        import resource
    except ImportError:  # Windows
        return False
    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    return soft != resource.RLIM_INFINITY


def read_mp4(path: str | os.PathLike[str]) -> tuple[list[np.ndarray], float]:
    """Decode an MP4 into 8-bit RGB frames and its frame rate (for tests and tools)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = next(reader)
    w, h = meta["size"]
    frames = [np.frombuffer(buf, np.uint8).reshape(h, w, 3).copy() for buf in reader]
    return frames, float(meta["fps"])


# --------------------------------------------------------------------------- panoramas


@dataclass(frozen=True)
class PanoramaSource:
    """Where an equirect panorama's frames are: one image, a frame folder or an output folder."""

    frames: list[Path]
    fps: float | None
    loop: bool
    manifest: dict[str, Any] | None

    @property
    def count(self) -> int:
        return len(self.frames)


def open_panorama(path: str | os.PathLike[str]) -> PanoramaSource:
    """Resolve ``path`` to its frames: an image file, a folder of numbered frames, or a
    PanoLoop output folder (with ``manifest.json`` and ``frames/``).

    Checks that the first frame is readable and 2:1; raises :class:`BadInput` otherwise.
    """
    path = Path(path)
    if not path.exists():
        raise BadInput(f"panorama not found: {path}")
    manifest = None
    fps = None
    loop = False
    if path.is_file():
        frames = [path]
    elif (path / MANIFEST_NAME).is_file():
        manifest = read_manifest(path)
        frames = list_frames(frames_folder(path, manifest))
        fps = manifest.get("fps")
        loop = bool(manifest.get("loop", False))
        if manifest.get("frames") not in (None, len(frames)):
            raise BadInput(
                f"{path} manifest says {manifest.get('frames')} frames but "
                f"{len(frames)} are on disk"
            )
    else:
        frames = list_frames(path)
    first = read_image(frames[0])
    check_equirect_shape(first.shape[1], first.shape[0], frames[0])
    return PanoramaSource(frames=frames, fps=fps, loop=loop, manifest=manifest)


def check_equirect_shape(width: int, height: int, what: object) -> None:
    """Refuse a panorama that is not 2:1 (equirect covers 360°×180°)."""
    if width != 2 * height:
        raise BadInput(f"panorama {what} is {width}x{height}; an equirect panorama must be 2:1")
