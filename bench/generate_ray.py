"""Per-step overhead of ``generate --ray`` against the in-process sampler, in one run.

The tiny random-weight AnimateDiff (``tests/tiny_models.py``, loaded through our loader)
samples the same request in-process and on a local Ray cluster with 1 and with 2 workers
(each its own process holding the model), the two interleaved ``--repeats`` times:
shifted windows (``--schedule windows``), ``--steps`` steps of a 256×128-pixel, 8-frame
ring (32×16 latent, 4-frame windows: 16 model calls a step). Per step = the
``denoise`` stage's wall time / steps (the prompt is encoded before it; loading and the
cluster's start are timed apart), medians over the repeats. The latents must be equal
bit for bit, or the run fails. Baseline: the in-process run.

With a model this small a call costs milliseconds, so the figure is the Ray path's own
cost per step (numpy copies, the object store, scheduling) — an upper bound on its
share of a real model's step, where one call takes 0.1–10 s.

Run: ``.venv/bin/python bench/generate_ray.py [--steps 6] [--workers 1,2] [--repeats 3]``
(it prints the load average at its start and end).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
from tiny_models import build_tiny_animatediff  # noqa: E402

from engine.cluster.connect import connected, parse_cluster  # noqa: E402
from engine.generate import schedule as sch  # noqa: E402
from engine.generate.cluster import load_spec, ray_backend  # noqa: E402
from engine.generate.loading import inspect_model, load_animatediff  # noqa: E402
from engine.generate.sampler import GenerateRequest, sample_latent  # noqa: E402
from engine.progress import JobContext  # noqa: E402

WINDOW_FRAMES = 4


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (2 cores here: above 2 the run was shared)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def timed_sample(backend, request: GenerateRequest) -> tuple[torch.Tensor, float]:
    """The clean latent and the seconds per denoising step."""
    ctx = JobContext()
    latent = sample_latent(backend, request, ctx).latent
    return latent, ctx.timings["denoise"] / request.steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the tests do; the workers take the driver's count
    print(f"load average at start: {load_average()}")
    model = build_tiny_animatediff(Path(tempfile.mkdtemp(prefix="panoloop-bench-")) / "tiny")
    info = inspect_model(str(model))
    request = GenerateRequest("a misty pine forest", args.width, args.width // 2, args.frames,
                              args.steps, schedule="windows")  # fmt: skip
    grid = (args.frames, args.width // 16, args.width // 8)
    calls = len(sch.shifted_windows(0, sch.WindowGrid((WINDOW_FRAMES, 8, 8), 8), grid))
    backend = load_animatediff(info, window_frames=WINDOW_FRAMES, device="cpu")
    warm_up = dataclasses.replace(request, steps=1)  # first calls pay one-time costs
    timed_sample(backend, warm_up)
    reference, _ = timed_sample(backend, request)
    print(f"{calls} model calls a step, {args.steps} steps, {args.repeats} repeats")
    start = time.perf_counter()
    local = parse_cluster("local", flag="--ray")
    cluster = contextlib.ExitStack()  # the jobs below reuse this one local cluster
    cluster.enter_context(connected(local))
    print(f"local cluster started in {time.perf_counter() - start:.1f} s")
    options = SimpleNamespace(model=str(model), motion_adapter=None, offline=True, device="cpu",
                              dtype="auto", window_frames=WINDOW_FRAMES, cpu_offload=False,
                              vae_slicing=False)  # fmt: skip
    spec = load_spec(info, options, vae_tiling=False)
    failed = False
    try:
        for count in (int(n) for n in args.workers.split(",")):
            ctx = JobContext()
            with ray_backend(local, count, spec, ctx) as remote:
                timed_sample(remote, warm_up)
                plain, ray_s = [], []
                for _ in range(args.repeats):  # interleaved, so a shared machine's drift
                    ray_latent, seconds = timed_sample(remote, request)  # hits both alike
                    ray_s.append(seconds)
                    plain.append(timed_sample(backend, request)[1])
                    failed |= not torch.equal(ray_latent, reference)
            ours, base = statistics.median(ray_s), statistics.median(plain)
            print(
                f"ray, {count} worker(s): {ours * 1000:.1f} ms/step; in-process "
                f"{base * 1000:.1f} ms/step (medians): ratio {ours / base:.2f} "
                f"(+{(ours - base) * 1000:.1f} ms/step, {(ours - base) / calls * 1000:.1f} ms "
                f"a call); workers loaded in {ctx.timings['load']:.1f} s"
            )
        print(f"latents bit-identical to in-process: {not failed}")
    finally:
        cluster.close()
    print(f"load average at end: {load_average()}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
