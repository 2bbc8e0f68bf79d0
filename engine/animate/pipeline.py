"""Still equirect panorama → seamless looping 360° video (the ``animate`` job).

Reads as numbered steps: check inputs → predict (or load) the motion → prepare the
renderer → render, write and encode every frame → manifest; the output folder is
written to a temporary sibling and renamed into place whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checks import FRAMES, check_path
from ..colour import DEFAULT_VIEW, DisplayTransform, display_transform
from ..errors import BadInput
from ..media import (
    FRAMES_DIR,
    FRAMES_EXR_CODEC,
    PREVIEW_NAME,
    atomic_output_dir,
    check_equirect_shape,
    check_exr_codec,
    check_output_free,
    encode_image,
    frame_suffix,
    panorama_manifest,
    read_image,
    write_manifest,
)
from ..preflight import (
    FLOAT_RGB_BYTES,
    image_header,
    require_animate_disk,
    require_animate_memory,
)
from ..progress import JobContext
from ..sink import FrameSink
from .priors import DRIFT_SPEED, Drift, MotionPrior, ProceduralPrior
from .spectral import (
    HERTZ,
    MotionTexture,
    SpectralVolume,
    check_volume,
    load_volume,
    save_volume,
    usable_frequencies,
)
from .warp import BackwardWarper

#: The motion used is always saved next to the frames, so it can be reused or edited.
MOTION_NAME = "motion.npz"
#: Largest motion strength: 100× the prior's calm motion already tears the image apart.
MAX_STRENGTH = 100.0
#: Fewest frames of a loop that can move (one cycle needs more than 2 samples).
MIN_FRAMES = 3
#: Fastest one-way drift accepted, degrees of arc per second (a quarter turn per second).
MAX_DRIFT_SPEED = 90.0
#: Frames of the loop rendered at set-up to check the detail gains on (each about
#: 0.25 s at 2048×1024 on 2 cores; see :meth:`~engine.animate.warp.BackwardWarper.calibrate`).
CALIBRATION_PROBES = 3


# --------------------------------------------------------------------------- input checks


def frame_count(seconds: float, fps: float) -> int:
    """Frames in a loop of ``seconds`` at ``fps``: a whole number ≥ 3.

    Three is the fewest frames that can show one cycle per loop (a frequency must stay
    below half the frame count, see :func:`~engine.animate.spectral.usable_frequencies`).
    """
    for name, value in (("seconds", seconds), ("fps", fps)):
        if not math.isfinite(value) or value <= 0:
            raise BadInput(f"{name} must be a positive number, got {value}")
    frames = seconds * fps
    if frames > FRAMES.high:
        raise BadInput(
            f"seconds × fps = {seconds:g} × {fps:g} = {frames:,.0f} frames; {FRAMES.describe()}"
        )
    rounded = round(frames)
    if abs(frames - rounded) > 1e-6 * max(1.0, frames):
        raise BadInput(
            f"seconds × fps = {seconds} × {fps} = {frames:g} frames; it must be a whole number"
        )
    if rounded < MIN_FRAMES:
        raise BadInput(f"a loop needs at least {MIN_FRAMES} frames, got seconds × fps = {rounded}")
    return int(rounded)


def check_strength(strength: float) -> float:
    """Motion strength: a number in [0, MAX_STRENGTH] (0 = the still image)."""
    if not math.isfinite(strength) or strength < 0:
        raise BadInput(f"strength must be a finite number >= 0, got {strength}")
    if strength > MAX_STRENGTH:
        raise BadInput(f"strength must be at most {MAX_STRENGTH:g}, got {strength}")
    return float(strength)


def check_seed(seed: int) -> int:
    if seed < 0:
        raise BadInput(f"seed must be >= 0, got {seed}")
    return int(seed)


def read_panorama_image(path: Path) -> np.ndarray:
    """The still to animate: readable, 2:1, width a multiple of 4, finite values."""
    image = read_image(path)
    height, width = image.shape[:2]
    check_equirect_shape(width, height, path)
    if width % 4 or width < 8:
        raise BadInput(f"panorama {path} is {width}x{height}; width must be a multiple of 4, >= 8")
    if image.dtype.kind == "f" and not np.all(np.isfinite(image)):
        raise BadInput(f"panorama {path} contains NaN or infinite pixel values")
    return image


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A motion mask as (H, W) float32 in [0, 1]: white moves, black (0) stays exactly still.

    Any image type; colour masks use the mean of R, G, B. Must match the panorama's size.
    """
    mask = read_image(path)
    if mask.shape[:2] != shape:
        raise BadInput(
            f"mask {path} is {mask.shape[1]}x{mask.shape[0]}; the panorama is {shape[1]}x{shape[0]}"
        )
    if mask.dtype.kind == "f":
        if not np.all(np.isfinite(mask)):
            raise BadInput(f"mask {path} contains NaN or infinite values")
        values = np.clip(mask, 0.0, 1.0)
    else:
        values = mask.astype(np.float32) / np.float32(np.iinfo(mask.dtype).max)
    return values.mean(axis=2).astype(np.float32)


def check_drift(direction: float | None, speed: float | None) -> Drift:
    """The one-way drift's heading (degrees, any finite value) and speed (degrees of arc
    per second, in [0, MAX_DRIFT_SPEED]); None = the default."""
    if direction is not None and not math.isfinite(direction):
        raise BadInput(f"drift direction must be a finite number of degrees, got {direction}")
    if speed is not None:
        if not math.isfinite(speed) or speed < 0:
            raise BadInput(f"drift speed must be a finite number >= 0 (deg/s), got {speed}")
        if speed > MAX_DRIFT_SPEED:
            raise BadInput(f"drift speed must be at most {MAX_DRIFT_SPEED:g} deg/s, got {speed}")
    return Drift(
        None if direction is None else float(direction),
        DRIFT_SPEED if speed is None else float(speed),
    )


def read_motion_map(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A painted motion map as (H, W, 3) float32 in [0, 1]: red = drift/flow, green =
    sway, blue = ripple. It must be RGB (a grey image cannot say which kind) and the
    panorama's size."""
    import cv2

    image = read_image(path)
    channels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    count = 1 if channels is None or channels.ndim == 2 else channels.shape[2]
    if count < 3:
        raise BadInput(
            f"motion map {path} is grey ({count} channel); paint it in RGB: "
            "red = drift, green = sway, blue = ripple"
        )
    if image.shape[:2] != shape:
        raise BadInput(
            f"motion map {path} is {image.shape[1]}x{image.shape[0]}; "
            f"the panorama is {shape[1]}x{shape[0]}"
        )
    if image.dtype.kind == "f":
        if not np.all(np.isfinite(image)):
            raise BadInput(f"motion map {path} contains NaN or infinite values")
        return np.clip(image, 0.0, 1.0).astype(np.float32)
    return (image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)).astype(np.float32)


def read_motion(path: Path, shape: tuple[int, int], mask: np.ndarray | None) -> SpectralVolume:
    """A saved spectral volume for this panorama; a mask further multiplies its amplitude."""
    volume = load_volume(path)
    if volume.image_shape != shape:
        raise BadInput(
            f"motion file {path} was made for {volume.image_shape[1]}x{volume.image_shape[0]}; "
            f"the panorama is {shape[1]}x{shape[0]}"
        )
    if mask is not None:
        volume = volume.with_amplitude(volume.amplitude * mask)
    return volume


# --------------------------------------------------------------------------- rendering


class LoopRenderer:
    """Frames of ``image`` moved by ``volume`` over a loop of ``frames`` frames.

    Frame ``t`` and ``t + frames`` are identical; pixels of amplitude 0 equal the input
    bit for bit; ``strength`` scales every displacement (0 reproduces the input). The
    loop lasts ``frames / fps`` seconds (frequencies in hertz play at its nearest
    whole harmonics).
    """

    def __init__(
        self,
        image: np.ndarray,
        volume: SpectralVolume,
        frames: int,
        strength: float = 1.0,
        threads: int | None = None,
        fps: float = 24.0,
    ):
        height, width = image.shape[:2]
        if volume.image_shape != (height, width):
            raise BadInput(
                f"motion amplitude is {volume.image_shape[1]}x{volume.image_shape[0]}, "
                f"image is {width}x{height}"
            )
        self.frames = frames
        self.seconds = frames / fps
        pixels_per_radian = width / (2 * math.pi)
        self.texture = MotionTexture(
            volume, frames, scale=pixels_per_radian * strength, seconds=self.seconds
        )
        flow = None
        if volume.flow is not None:
            flow = volume.flow * np.float32(pixels_per_radian * strength)
        self.warper = BackwardWarper(
            image,
            volume.amplitude,
            volume.grid_shape,
            flow=flow,
            seconds=self.seconds,
            threads=threads,
        )
        self._motion = np.empty(self.texture.shape, dtype=np.float32)
        self.warper.calibrate(self._probes(), frames)

    def _probes(self) -> Iterator[tuple[np.ndarray, int]]:
        """(motion, t) of the :data:`CALIBRATION_PROBES` frames the detail gains are
        checked on, spread evenly over the loop (t = F/6, F/2, 5F/6 for three)."""
        count = min(CALIBRATION_PROBES, self.frames)
        for k in range(count):
            t = (2 * k + 1) * self.frames // (2 * count)
            yield self.texture.frame(t, self._motion), t

    def frame(self, t: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame ``t`` (periodic in ``frames``), same dtype as the input image."""
        motion = self.texture.frame(t, self._motion)
        return self.warper.render(motion, t, self.frames, out)

    def __iter__(self) -> Iterator[np.ndarray]:
        for t in range(self.frames):
            yield self.frame(t)


def loop_motion_statistics(texture: MotionTexture) -> tuple[np.ndarray, float]:
    """Mean displacement magnitude per coarse pixel over the loop, and the largest |row shift|."""
    motion = np.empty(texture.shape, dtype=np.float32)
    total = np.zeros(texture.shape[1:], dtype=np.float64)
    max_row_shift = 0.0
    for t in range(texture.frames):
        texture.frame(t, motion)
        total += np.hypot(motion[0], motion[1])
        max_row_shift = max(max_row_shift, float(np.abs(motion[1]).max()))
    return (total / texture.frames).astype(np.float32), max_row_shift


def render_loop(
    image: np.ndarray,
    volume: SpectralVolume,
    frames: int,
    strength: float = 1.0,
    threads: int | None = None,
    fps: float = 24.0,
) -> list[np.ndarray]:
    """All frames of the loop in memory (library use and tests; frame 0 is not repeated)."""
    return list(LoopRenderer(image, check_volume(volume), frames, strength, threads, fps))


def kind_report(volume: SpectralVolume, seconds: float, frames: int) -> dict:
    """Per motion kind: its frequencies, the whole cycles per loop it plays, and whether
    the loop is too short (or its frames too few) for it to oscillate at all."""
    cycles = volume.loop_cycles(seconds)
    usable = usable_frequencies(cycles, frames, volume.unit)
    kinds = volume.kinds or ("all",) * len(cycles)
    report: dict = {}
    for name in dict.fromkeys(kinds):
        pick = [i for i, k in enumerate(kinds) if k == name]
        played = sorted({int(cycles[i]) for i in pick if usable[i]})
        entry = {
            "frequencies": [round(float(volume.frequencies[i]), 6) for i in pick],
            "cycles_per_loop": played,
            "oscillates": bool(played),
        }
        if not played:
            unit = "Hz" if volume.unit == HERTZ else "cycles per loop"
            lo, hi = min(entry["frequencies"]), max(entry["frequencies"])
            entry["note"] = (
                f"a {seconds:g} s loop of {frames} frames is too short for {name} "
                f"({lo:g}-{hi:g} {unit}): it rounds to 0 cycles (or aliases), so {name} "
                "does not oscillate"
            )
        report[name] = entry
    return report


# --------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class AnimateRequest:
    """Everything ``animate`` needs, already checked (see :func:`check_request`)."""

    image_path: Path
    out: Path
    image: np.ndarray
    frames: int
    seconds: float
    fps: float
    strength: float
    seed: int
    mask: np.ndarray | None
    mask_path: Path | None
    motion: SpectralVolume | None
    motion_path: Path | None
    motion_map: np.ndarray | None = None
    motion_map_path: Path | None = None
    drift: Drift = Drift()
    display: DisplayTransform | None = None
    exr_codec: str = FRAMES_EXR_CODEC


def check_request(
    image_path: Path,
    out: Path,
    *,
    seconds: float = 4.0,
    fps: float = 24.0,
    mask_path: Path | None = None,
    strength: float = 1.0,
    seed: int = 0,
    motion_path: Path | None = None,
    motion_map_path: Path | None = None,
    drift_direction: float | None = None,
    drift_speed: float | None = None,
    view: str = DEFAULT_VIEW,
    exposure: float = 0.0,
    ocio_config: Path | None = None,
    exr_codec: str = FRAMES_EXR_CODEC,
) -> AnimateRequest:
    """Check every input (cheap ones first); raises :class:`BadInput`, writes nothing."""
    image_path, out = Path(image_path), Path(out)
    frames = frame_count(seconds, fps)
    strength = check_strength(strength)
    seed = check_seed(seed)
    exr_codec = check_exr_codec(exr_codec)
    display_transform(view, exposure, ocio_config, needed=False)  # the cheap checks first
    drift = check_drift(drift_direction, drift_speed)
    if motion_path is not None:
        given = [
            name
            for name, value in (
                ("--motion-map", motion_map_path),
                ("--drift-direction", drift_direction),
                ("--drift-speed", drift_speed),
            )
            if value is not None
        ]
        if given:
            raise BadInput(
                f"{', '.join(given)} shape the prior's motion; a saved --motion {motion_path} "
                "already holds its own (use --mask and --strength with it)"
            )
    check_output_free(out)
    header = image_header(check_path(image_path, "image"))
    if header is not None:  # before decoding: a huge panorama is refused without loading
        float_input = header.bytes_per_pixel == FLOAT_RGB_BYTES
        require_animate_memory(header.width, header.height, float_input)
    image = read_panorama_image(image_path)
    display = display_transform(view, exposure, ocio_config, needed=image.dtype.kind == "f")
    shape = image.shape[:2]
    is_float, suffix = image.dtype.kind == "f", frame_suffix(image.dtype)
    require_animate_memory(shape[1], shape[0], is_float)
    require_animate_disk(
        shape[1], shape[0], is_float, frames, out, lambda: len(encode_image(image, suffix))
    )  # fmt: skip
    mask = read_mask(Path(mask_path), shape) if mask_path is not None else None
    motion_map = read_motion_map(Path(motion_map_path), shape) if motion_map_path else None
    motion = read_motion(Path(motion_path), shape, mask) if motion_path is not None else None
    return AnimateRequest(
        image_path, out, image, frames, seconds, fps, strength, seed,
        mask, Path(mask_path) if mask_path else None,
        motion, Path(motion_path) if motion_path else None,
        motion_map, Path(motion_map_path) if motion_map_path else None, drift,
        display, exr_codec,
    )  # fmt: skip


def animate_panorama(
    image_path: Path,
    out: Path,
    *,
    seconds: float = 4.0,
    fps: float = 24.0,
    mask_path: Path | None = None,
    strength: float = 1.0,
    seed: int = 0,
    motion_path: Path | None = None,
    motion_map_path: Path | None = None,
    drift_direction: float | None = None,
    drift_speed: float | None = None,
    view: str = DEFAULT_VIEW,
    exposure: float = 0.0,
    ocio_config: Path | None = None,
    exr_codec: str = FRAMES_EXR_CODEC,
    prior: MotionPrior | None = None,
    ctx: JobContext | None = None,
) -> Path:
    """Animate a still equirect image into a looping output folder at ``out``; returns it.

    ``out`` gets ``frames/`` (half-float EXR compressed with ``exr_codec`` for EXR/HDR
    input, HDR kept; PNG for 8/16-bit input; numbered from 0, no repeated loop frame),
    ``panorama.mp4`` (8-bit preview through Blender's ``view`` with ``exposure`` stops,
    see :mod:`engine.colour`), ``motion.npz`` (the spectral volume used, before
    ``strength``) and ``manifest.json``.
    """
    ctx = ctx or JobContext()
    prior = prior or ProceduralPrior()
    # 1. Check inputs: nothing is written before all of them pass.
    req = check_request(
        image_path, out, seconds=seconds, fps=fps, mask_path=mask_path,
        strength=strength, seed=seed, motion_path=motion_path,
        motion_map_path=motion_map_path, drift_direction=drift_direction,
        drift_speed=drift_speed, view=view,
        exposure=exposure, ocio_config=ocio_config, exr_codec=exr_codec,
    )  # fmt: skip
    # 2. Motion: the prior's spectral volume, or the one the user saved.
    with ctx.timed("motion"):
        volume = req.motion or prior.spectral_volume(
            req.image, mask=req.mask, seed=req.seed, motion_map=req.motion_map, drift=req.drift
        )
        volume = check_volume(volume, f"motion from prior {prior.name!r}")
    ctx.cancel.check()
    with atomic_output_dir(req.out) as tmp, ThreadPoolExecutor(1, "panoloop-motion") as saver:
        # 3. Prepare the renderer (tables, weights, compiled kernels) while another thread
        # compresses motion.npz (on the core the mostly serial set-up leaves idle); a
        # failed save (a full disk) stops the job here, before any frame. Leaving the
        # block by an error still waits for that thread before the folder goes.
        with ctx.timed("prepare"):
            saved = saver.submit(save_volume, tmp / MOTION_NAME, volume)
            renderer = LoopRenderer(req.image, volume, req.frames, req.strength, fps=req.fps)
            saved.result()
        # 4. Render; writer threads write and encode while the next frames render.
        (tmp / FRAMES_DIR).mkdir()
        _render_into_sink(renderer, tmp, req, ctx)
        # 5. Manifest: the contract fields, then how it was made.
        height, width = req.image.shape[:2]
        manifest = panorama_manifest(
            width=width,
            height=height,
            frames=req.frames,
            fps=req.fps,
            loop=True,
            kind="animate",
            seconds=req.seconds,
            frame_type=req.image.dtype.name,
            source=str(req.image_path),
            mask=str(req.mask_path) if req.mask_path else None,
            motion_map=str(req.motion_map_path) if req.motion_map_path else None,
            drift_direction=volume.info.get("drift_direction"),
            drift_speed=volume.info.get("drift_speed"),
            one_way_flow=volume.flow is not None,
            motion_file=MOTION_NAME,
            motion_source=str(req.motion_path) if req.motion_path else "prior",
            # A clip's or a diffusion model's provenance, from the prior or the saved file.
            motion_origin=volume.info.get("source"),
            prior=volume.prior,
            seed=req.seed,
            strength=req.strength,
            frequencies=volume.frequencies.tolist(),
            frequency_unit=volume.unit,
            motion_kinds=kind_report(volume, req.seconds, req.frames),
            motion_grid=[volume.grid_shape[1], volume.grid_shape[0]],
            preview=req.display.describe(),
            exr_codec=req.exr_codec if req.image.dtype.kind == "f" else None,
            timings=ctx.timings,
        )
        write_manifest(tmp, manifest)
    return req.out


def _render_into_sink(renderer: LoopRenderer, tmp: Path, req: AnimateRequest, ctx: JobContext):
    """Render every frame and hand it to a :class:`~engine.sink.FrameSink` that writes
    ``frames/`` and streams ``panorama.mp4`` in parallel; returns when all is on disk.

    Timings: ``render`` (this thread), and from the sink ``write_frames``, ``tone_map``,
    ``encode_preview`` (summed over their threads) and ``wait`` (this thread blocked on
    full queues or on the last writes).
    """
    sink = FrameSink(
        tmp / FRAMES_DIR,
        renderer.frames,
        display=req.display,
        preview=tmp / PREVIEW_NAME,
        fps=req.fps,
        exr_codec=req.exr_codec,
        ctx=ctx,
    )
    with sink:
        for t in range(renderer.frames):
            ctx.step("render", t + 1, renderer.frames)
            with ctx.timed("render"):
                frame = renderer.frame(t)
            sink.put(t, frame)
        sink.finish()
    ctx.timings.update(sink.timings())
