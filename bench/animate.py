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

    .venv/bin/python bench/animate.py [--frames 96] [--baseline-frames 24] [--hdri forest]
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

from engine.animate.measure import moving_region, sharpness_ratio  # noqa: E402
from engine.animate.pipeline import LoopRenderer, loop_motion_statistics  # noqa: E402
from engine.animate.priors import ProceduralPrior  # noqa: E402
from engine.animate.splat import SOFTMAX_BETA, SoftmaxSplatter  # noqa: E402
from engine.media import encode_mp4, read_image, to_display_uint8  # noqa: E402

WIDTH, HEIGHT = 2048, 1024


def bundled_hdri(name: str) -> Path:
    bpy_dir = Path(importlib.util.find_spec("bpy").origin).parent
    return bpy_dir / "5.0/datafiles/studiolights/world" / f"{name}.exr"


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
    plan = [np.array_split(np.arange(n), chunks) for n in counts]
    for chunk in range(chunks):
        for which, render in enumerate(renderers):
            start = time.perf_counter()
            for t in plan[which][chunk]:
                render(texture.frame(int(t), motion), int(t))
            spent[which] += time.perf_counter() - start
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument(
        "--baseline-frames", type=int, default=24, help="frames timed for the slow baseline"
    )
    parser.add_argument("--hdri", default="forest")
    parser.add_argument("--threads", type=int, help="threads for both (default: every core)")
    args = parser.parse_args()
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

    frames = [renderer.frame(t) for t in range(min(args.frames, 24))]
    start = time.perf_counter()
    previews = [to_display_uint8(f) for f in frames]
    tone_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        encode_mp4(previews, Path(tmp) / "preview.mp4", 24)
        encode_s = time.perf_counter() - start

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
    n = len(frames)
    print(
        f"preview (timed separately, {n} frames): tone map {n / tone_s:.1f} frames/s, "
        f"libx264 medium {n / encode_s:.1f} frames/s"
    )
    if not math.isfinite(fps_ours):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
