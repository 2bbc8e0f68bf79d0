"""Benchmark: render a 2048×1024 looping panorama of 96 frames from a still HDRI.

Ours (:class:`engine.animate.pipeline.LoopRenderer`: coarse motion from the spectral
volume, inverted per pixel and sampled backwards with a cubic B-spline, one-way flow,
seam and poles exact) against the previous numba softmax splat (forward, bilinear) and
a plain torch ``scatter_add_`` softmax splat of the same motion, same softmax weights and
the same seam wrap, measured in the same run on the same frames. Also prints the
sharpness ratio (Laplacian variance of the moving pixels against the source's) of ours
and of the softmax splat. Both include building
each frame's motion from the spectral volume. Preview encoding (tone map + libx264) is
timed separately. Prints frames per second and the ratio. The two are
timed in alternating chunks so both see the same load on a shared machine; the slow
baseline is timed over fewer frames (``--baseline-frames``).

End to end, in the same run: a whole ``animate`` job (motion prior, renderer set-up,
rendering, EXR frames, the AgX preview MP4, manifest) of the same 96 frames at 2048×1024,
and its frames/s against the renderer's own (the ratio the issue asks ≥ 0.5 of). Then the
parts: each EXR codec's size, writing time and error on a rendered frame; x264 presets;
the tone map; the share of the sky clipped white by the old preview and by AgX.

    .venv/bin/python bench/animate.py [--frames 96] [--baseline-frames 24] [--hdri forest]
        [--ocio-config Blender's config.ocio (default $OCIO, else an installed Blender's)]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import colour  # noqa: E402
from engine.animate.measure import moving_region, sharpness_ratio  # noqa: E402
from engine.animate.pipeline import (  # noqa: E402
    LoopRenderer,
    animate_panorama,
    loop_motion_statistics,
)
from engine.animate.priors import ProceduralPrior  # noqa: E402
from engine.animate.splat import SOFTMAX_BETA, SoftmaxSplatter  # noqa: E402
from engine.media import (  # noqa: E402
    DWA_LEVEL,
    EXR_CODECS,
    FRAMES_EXR_CODEC,
    HALF_MAX,
    encode_mp4,
    half_planes,
    read_image,
    to_display_uint8,
    write_image,
)
from engine.progress import JobContext  # noqa: E402
from engine.sink import preview_frame  # noqa: E402

WIDTH, HEIGHT = 2048, 1024


def bundled_hdri(name: str) -> Path:
    bpy_dir = Path(importlib.util.find_spec("bpy").origin).parent
    return bpy_dir / "5.0/datafiles/studiolights/world" / f"{name}.exr"


def end_to_end(
    image: np.ndarray, frames: int, workdir: Path, config: Path
) -> tuple[float, float, dict]:
    """Wall seconds of a whole animate job on ``image`` (written as a lossless EXR first),
    its CPU seconds (this process and ffmpeg) and its per-stage timings."""
    source = write_image(workdir / "still.exr", image, exr_codec="piz")
    ctx = JobContext()
    start, cpu = time.perf_counter(), time.process_time() + children_cpu()
    animate_panorama(
        source, workdir / "loop", seconds=frames / 24, fps=24, ocio_config=config, ctx=ctx
    )
    cpu = time.process_time() + children_cpu() - cpu
    return time.perf_counter() - start, cpu, ctx.timings


def children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def codec_table(frame: np.ndarray, workdir: Path, display: colour.DisplayTransform) -> None:
    """Size, writing time (wall and CPU) and error of each EXR codec on one rendered frame."""
    stored = frame.astype(np.float16).astype(np.float32)
    shown = display.to_uint8(stored)
    bright = stored > 2.0**-4
    print(
        f"EXR codecs on a rendered 2048x1024 frame (half float; best of 3; DWA level "
        f"{DWA_LEVEL:g}):"
    )
    for codec in EXR_CODECS:
        path = workdir / f"codec_{codec}.exr"
        walls, cpus = [], []
        for _ in range(3):
            wall, cpu = time.perf_counter(), time.process_time()
            write_image(path, frame, exr_codec=codec)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        back = read_image(path)
        rel = np.abs(back - stored)[bright] / stored[bright]
        levels = np.abs(display.to_uint8(back).astype(int) - shown.astype(int))
        mse = float(np.mean(levels.astype(np.float64) ** 2))
        psnr = f"{10 * math.log10(255**2 / mse):.1f} dB" if mse > 0 else "exact"
        print(
            f"  {codec:5s} {path.stat().st_size / 1e6:5.2f} MB  write {1000 * min(walls):6.1f} ms "
            f"wall {1000 * min(cpus):6.1f} ms CPU  rel. error (values > 2^-4) max {rel.max():.4f} "
            f"p99.9 {np.quantile(rel, 0.999):.4f}  AgX preview max {levels.max()} levels, "
            f"PSNR {psnr}"
        )


def preset_table(previews: list[np.ndarray], workdir: Path) -> None:
    n = len(previews)
    height, width = previews[0].shape[:2]
    print(f"x264 presets, {n} AgX frames {width}x{height} at CRF 18 (ffmpeg's CPU per frame):")
    for preset in ("ultrafast", "superfast", "veryfast", "medium"):
        path = workdir / f"preset_{preset}.mp4"
        cpu, wall = children_cpu(), time.perf_counter()
        encode_mp4(previews, path, 24, preset=preset)
        cpu, wall = children_cpu() - cpu, time.perf_counter() - wall
        print(
            f"  {preset:9s} {1000 * cpu / n:6.1f} ms CPU/frame  {n / wall:5.1f} frames/s wall  "
            f"{path.stat().st_size / n / 1e3:6.1f} kB/frame"
        )


def clipped_table(display: colour.DisplayTransform) -> None:
    """Share of each HDRI's upper half at 255 in every channel: old clip vs AgX."""
    import cv2

    print("sky clipped white (upper half, all channels 255), old preview (clip at 1.0) -> AgX:")
    for name in ("forest", "sunset", "city", "courtyard", "night", "interior"):
        still = cv2.resize(read_image(bundled_hdri(name)), (WIDTH, HEIGHT))
        upper = slice(0, HEIGHT // 2)
        old = np.mean(np.all(to_display_uint8(still)[upper] == 255, axis=2))
        new = np.mean(np.all(display.to_uint8(still)[upper] == 255, axis=2))
        print(f"  {name:9s} {100 * old:5.1f} % -> {100 * new:5.2f} %")


class TorchSplat:
    """The baseline: full-resolution motion with ``F.interpolate``, softmax splatting with
    four ``scatter_add_`` calls per frame (colour·z and z), seam wrapped, poles clamped,
    holes and still pixels copied from the source."""

    def __init__(self, image: np.ndarray, splatter: SoftmaxSplatter) -> None:
        import torch

        self.torch = torch
        self.height, self.width = image.shape[:2]
        self.source = torch.from_numpy(splatter.source).reshape(-1, 3)
        self.amplitude = torch.from_numpy(splatter.amplitude)
        self.z = torch.from_numpy(splatter.zweight).reshape(-1, 1)
        self.colour_z = self.source * self.z
        rows, cols = torch.meshgrid(
            torch.arange(self.height, dtype=torch.float32),
            torch.arange(self.width, dtype=torch.float32),
            indexing="ij",
        )
        self.rows, self.cols = rows, cols
        self.still = (self.amplitude == 0).reshape(-1, 1)

    def render(self, motion: np.ndarray) -> np.ndarray:
        torch = self.torch
        # Pixel centres aligned as the renderer's own grid lookup (align_corners=False).
        coarse = torch.from_numpy(motion)[None]
        full = torch.nn.functional.interpolate(
            coarse, size=(self.height, self.width), mode="bilinear", align_corners=False
        )[0]
        tx = self.cols + full[0] * self.amplitude
        ty = self.rows + full[1] * self.amplitude
        x0, y0 = torch.floor(tx), torch.floor(ty)
        ax, ay = tx - x0, ty - y0
        acc = torch.zeros(self.height * self.width, 3)
        wsum = torch.zeros(self.height * self.width, 1)
        for dy, dx, share in (
            (0, 0, (1 - ay) * (1 - ax)),
            (0, 1, (1 - ay) * ax),
            (1, 0, ay * (1 - ax)),
            (1, 1, ay * ax),
        ):
            r = (y0 + dy).long().clamp(0, self.height - 1)
            c = torch.remainder((x0 + dx).long(), self.width)
            index = (r * self.width + c).reshape(-1, 1)
            weight = share.reshape(-1, 1) * self.z
            acc.scatter_add_(0, index.expand(-1, 3), self.colour_z * share.reshape(-1, 1))
            wsum.scatter_add_(0, index, weight)
        out = torch.where(wsum > 1e-3, acc / wsum.clamp_min(1e-12), self.source)
        out = torch.where(self.still, self.source, out)
        return out.reshape(self.height, self.width, 3).numpy()


def interleaved_timings(renderers, counts, texture, chunks: int = 12) -> list[float]:
    """Seconds for ``counts[i]`` frames of each ``renderers[i](motion, t)``, run in
    alternating chunks so all see the same machine load (the machine is shared). Each
    includes building the frame's motion from the spectral volume."""
    motion = np.empty(texture.shape, dtype=np.float32)
    spent = [0.0] * len(renderers)
    cpu = [0.0] * len(renderers)
    plan = [np.array_split(np.arange(n), chunks) for n in counts]
    for chunk in range(chunks):
        for which, render in enumerate(renderers):
            start, used = time.perf_counter(), time.process_time()
            for t in plan[which][chunk]:
                render(texture.frame(int(t), motion), int(t))
            spent[which] += time.perf_counter() - start
            cpu[which] += time.process_time() - used
    interleaved_timings.cpu = cpu
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument(
        "--baseline-frames", type=int, default=24, help="frames timed for the slow baseline"
    )
    parser.add_argument("--hdri", default="forest")
    parser.add_argument("--threads", type=int, help="threads for both (default: every core)")
    parser.add_argument("--ocio-config", type=Path, default=None)
    parser.add_argument(
        "--skip-parts", action="store_true", help="only the renderer and end-to-end figures"
    )
    args = parser.parse_args()
    display = colour.display_transform("AgX", 0.0, args.ocio_config)
    config = display.config
    import cv2
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    still = read_image(bundled_hdri(args.hdri))
    image = cv2.resize(still, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR)
    start = time.perf_counter()
    volume = ProceduralPrior().spectral_volume(image, mask=None, seed=0)
    prior_s = time.perf_counter() - start
    start = time.perf_counter()
    renderer = LoopRenderer(image, volume, args.frames, threads=args.threads)
    renderer.frame(0)  # compiles (or loads the cached) kernels
    prepare_s = time.perf_counter() - start
    print(
        f"{args.hdri}.exr upsampled to {WIDTH}x{HEIGHT}, {args.frames} frames; "
        f"our threads {renderer.warper.threads}, torch threads {torch.get_num_threads()}"
    )
    print(f"motion prior {prior_s:.2f} s, renderer setup + first frame {prepare_s:.2f} s (once)")

    out = np.empty_like(image)
    mean_motion, max_row_shift = loop_motion_statistics(renderer.texture)
    splatter = SoftmaxSplatter(
        image,
        volume.amplitude,
        mean_motion,
        max_row_shift * float(volume.amplitude.max()),
        threads=args.threads,
    )
    splatter.render(renderer.texture.frame(0))  # compiles (or loads) its kernels
    baseline = TorchSplat(image, splatter)
    baseline.render(renderer.texture.frame(0))  # warm-up
    load_before = os.getloadavg()[0]
    ours, splat, base = interleaved_timings(
        [
            lambda m, t: renderer.warper.render(m, t, args.frames, out),
            lambda m, t: splatter.render(m, out),
            lambda m, t: baseline.render(m),
        ],
        [args.frames, args.frames, args.baseline_frames],
        renderer.texture,
    )
    load_after = os.getloadavg()[0]

    # Detail kept where things move, on every 8th frame.
    region = moving_region(volume.amplitude)
    checked = range(0, args.frames, 8)
    sharp_ours = [sharpness_ratio(image, renderer.frame(t), region) for t in checked]
    sharp_splat = [
        sharpness_ratio(image, splatter.render(renderer.texture.frame(t)), region) for t in checked
    ]

    # The two softmax splats agree away from the poles (the baseline clamps there).
    motion = renderer.texture.frame(args.frames // 3)
    a = splatter.render(motion)
    b = baseline.render(motion)
    band = slice(HEIGHT // 8, HEIGHT - HEIGHT // 8)
    tone_a, tone_b = to_display_uint8(a[band]), to_display_uint8(b[band])
    mismatch = float(np.mean(np.abs(tone_a.astype(np.int16) - tone_b.astype(np.int16)) > 2))

    # The whole job, right after the renderer's own timing (same machine state).
    with tempfile.TemporaryDirectory() as tmp:
        load_e2e = os.getloadavg()[0]
        e2e_s, e2e_cpu, timings = end_to_end(image, args.frames, Path(tmp), config)
        frames_mb = sum(p.stat().st_size for p in (Path(tmp) / "loop/frames").iterdir()) / 1e6

    fps_ours = args.frames / ours
    fps_splat = args.frames / splat
    fps_base = args.baseline_frames / base
    print(f"load average (1 min) before/after timing: {load_before:.1f} / {load_after:.1f}")
    print(
        f"ours   (invert + B-spline warp): {args.frames:3d} frames {ours:6.2f} s  "
        f"{fps_ours:6.1f} frames/s"
    )
    print(
        f"before (numba softmax splat):    {args.frames:3d} frames {splat:6.2f} s  "
        f"{fps_splat:6.1f} frames/s"
    )
    print(
        f"torch  scatter_add_ baseline:    {args.baseline_frames:3d} frames {base:6.2f} s  "
        f"{fps_base:6.1f} frames/s"
    )
    print(
        f"speed: ours / softmax splat {fps_ours / fps_splat:.2f}x, "
        f"ours / torch {fps_ours / fps_base:.1f}x  (target >= 24 frames/s and >= 4x torch)"
    )
    print(
        f"sharpness ratio (moving pixels, every 8th frame): ours min {min(sharp_ours):.3f} "
        f"mean {np.mean(sharp_ours):.3f}; softmax splat min {min(sharp_splat):.3f} "
        f"mean {np.mean(sharp_splat):.3f}  (target >= 0.9)"
    )
    print(
        f"splat agreement (|Δ| > 2/255 of tone-mapped pixels, poles excluded): "
        f"{100 * mismatch:.2f}%; softmax beta {SOFTMAX_BETA}"
    )
    fps_e2e = args.frames / e2e_s
    print(
        f"end to end: whole animate job, {args.frames} frames {WIDTH}x{HEIGHT} "
        f"(load {load_e2e:.1f}): "
        f"{e2e_s:.2f} s = {fps_e2e:.1f} frames/s; frames on disk {frames_mb / args.frames:.2f} MB "
        f"each (default codec: {FRAMES_EXR_CODEC}, DWA level {DWA_LEVEL:g})"
    )
    print("  job timings (s; writers/tone map/encode summed over their threads):", timings)
    ours_cpu = interleaved_timings.cpu[0]
    print(
        f"  CPU per frame: renderer alone {1000 * ours_cpu / args.frames:.0f} ms "
        f"({ours_cpu / ours:.2f} cores busy); whole job {1000 * e2e_cpu / args.frames:.0f} ms "
        f"(this process and ffmpeg, {e2e_cpu / e2e_s:.2f} cores busy); {os.cpu_count()} cores"
    )
    print(f"end-to-end / renderer frames/s: {fps_e2e / fps_ours:.2f}  (target >= 0.5)")
    if not args.skip_parts:
        frames = [renderer.frame(t) for t in range(min(args.frames, 24))]
        planes = half_planes(frames[0])  # loads the compiled kernel; then as a writer does:
        start = time.process_time()  # each frame into the same planes
        for f in frames:
            half_planes(f, planes)
        half_cpu = time.process_time() - start
        start = time.process_time()
        for f in frames[:4]:
            np.clip(f, -HALF_MAX, HALF_MAX).astype(np.float16)
        numpy_half_cpu = time.process_time() - start
        start = time.process_time()
        smaller = [preview_frame(f) for f in frames]
        scale_cpu = time.process_time() - start
        start = time.process_time()
        previews = [display.to_uint8(f, threads=1).copy() for f in smaller]
        tone_cpu = time.process_time() - start
        start = time.process_time()
        for f in frames[:4]:
            display.to_uint8(f, threads=1)
        full_tone_cpu = time.process_time() - start
        n = len(frames)
        print(
            f"float32 -> half planes: {1000 * half_cpu / n:.1f} ms CPU/frame compiled; numpy "
            f"clip + astype {1000 * numpy_half_cpu / 4:.1f} ms"
        )
        print(
            f"preview {smaller[0].shape[1]}x{smaller[0].shape[0]}: area scale "
            f"{1000 * scale_cpu / n:.1f} ms CPU/frame, AgX at that size "
            f"{1000 * tone_cpu / n:.1f} ms (at full size {1000 * full_tone_cpu / 4:.1f} ms)"
        )
        start = time.process_time()
        for f in frames[:4]:
            colour.exact_to_uint8(config, "AgX", f)
        exact_cpu = time.process_time() - start
        print(
            f"tone map AgX, full size: baked {1000 * full_tone_cpu / 4:.0f} ms CPU/frame; "
            f"OpenColorIO's exact processor {1000 * exact_cpu / 4:.0f} ms CPU/frame"
        )
        with tempfile.TemporaryDirectory() as tmp:
            codec_table(frames[len(frames) // 2], Path(tmp), display)
            preset_table(previews, Path(tmp))
        clipped_table(display)
    if not math.isfinite(fps_ours):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
