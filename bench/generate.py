"""Work and memory of the ring-latent sampler, beside MultiDiffusion, in one run.

1. **Work per step** (no model; the schedules themselves): window pixels the model
   processes per latent pixel per step, at a 128×256 latent (2048×1024 px with
   AnimateDiff's 16×64×64 window), for our stages and for MultiDiffusion with stride 8
   counted by the same code. Baseline: MultiDiffusion.
2. **Peak memory at 4× the width** (each size in its own process; the peak is reset
   after the model has loaded, so it is the sampling's peak): the tiny random-weight
   AnimateDiff through our loader, one full denoising step of shifted windows; and the
   full-size AnimateDiff architecture (SD 1.5 UNet + v1.5 motion adapter configs,
   random weights — speed and memory do not depend on weight values) denoising one
   window of ``--full-frames`` frames on the ring (a whole step at full size is too
   slow for this CPU). Baseline: the same model at the small size.
3. **The GPU check** (``--parts cuda``): the full-size AnimateDiff built from the known
   configs below (SD 1.5 UNet, VAE and CLIP text encoder; motion adapter v1-5-2),
   random weights, float16: time per denoising step (16-frame windows, shifted
   windows, guidance on) and peak VRAM at 1024, 2048 and 4096 px wide; one frame decoded
   in float16 at each width (VAE tiling at 4096, as ``generate`` does) and checked free of
   NaN/Inf (random weights: this proves the path, not a real VAE's range); and model CPU
   offload, which must give the same latent as the plain run with less VRAM. Without
   CUDA it stops with a message saying nothing was measured.
   ``--parts cuda --device cpu --tiny`` runs the same plumbing on the CPU with tiny
   configs (widths 128, 256, 512) — a dry run, no figures worth quoting.
4. **Wan 2.1** (``wan`` part): the work table for Wan's native window (21 latent frames
   × 60 × 104, its 81-frame 480×832 training clip; patch 2) on a 2048×1024, 84-frame
   ring, and peak memory at 1× and 4× width for the full-size Wan2.1-T2V-1.3B
   transformer (its published config, random weights, float32 on the CPU) making one
   window call of ``--full-frames`` latent frames on a 16-frame ring without guidance
   (a whole step at full size is far too slow for this CPU).

Run: ``.venv/bin/python bench/generate.py [--parts work,tiny,full,cuda,wan] [--full-frames 2]``
or ``bench/generate.py --parts cuda`` on a machine with an NVIDIA GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from schedule_reference import coverage, multidiffusion_windows  # noqa: E402

from engine.generate import schedule as sch  # noqa: E402

ANIMATEDIFF_WINDOW = sch.WindowGrid((16, 64, 64), align=8)
GRID_2K = (16, 128, 256)  # frames, latent rows, latent cols of 2048×1024 px
WAN_WINDOW = sch.WindowGrid((21, 60, 104), align=2)  # 81 frames of 480×832 px
WAN_GRID_2K = (21, 128, 256)  # 84 frames of 2048×1024 px
#: Wan2.1-T2V-1.3B's transformer config (diffusers' ``WanTransformer3DModel``).
WAN_1_3B = dict(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30,
                text_dim=4096, freq_dim=256, in_channels=16, out_channels=16,
                patch_size=(1, 2, 2), cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                eps=1e-6, rope_max_seq_len=1024)  # fmt: skip
STEPS = 25


# --------------------------------------------------------------------------- 1. work


def pixels_per_cell(views: list, grid: tuple[int, int, int]) -> float:
    return sum(v.pixels for v in views) / math.prod(grid)


def sphere_step_views(step: int, window: sch.WindowGrid, grid: tuple) -> list:
    """A sphere-view step as the sampler runs it: the views, then fill windows."""
    views = sch.sphere_views(step, window, grid)
    written = coverage(views, grid).reshape(grid[0], -1) > 0
    return views + sch.fill_windows(step, window, grid, written)


def work_table(
    window: sch.WindowGrid = ANIMATEDIFF_WINDOW, grid: tuple[int, int, int] = GRID_2K
) -> None:
    cycle = range(sch.OFFSET_CYCLE)
    flat = [
        pixels_per_cell(sch.shifted_windows(s, window, grid, latitude_shift=False), grid)
        for s in cycle
    ]
    lat = [pixels_per_cell(sch.shifted_windows(s, window, grid), grid) for s in cycle]
    coarse = (grid[0], grid[1] // 2, grid[2] // 2)
    sphere = [pixels_per_cell(sphere_step_views(s, window, coarse), coarse) for s in range(4)]
    blend = [pixels_per_cell(sch.blend_windows(s, window, grid), grid) for s in cycle]
    multi = pixels_per_cell(multidiffusion_windows(window, grid, stride=8), grid)
    name = "1." if window == ANIMATEDIFF_WINDOW else "4. Wan:"
    # The whole default plan, in full-canvas latent pixels per step.
    total = 0.0
    for stage in sch.plan_stages(STEPS, grid[1:], window):
        canvas = (grid[0], grid[1] // stage.scale, grid[2] // stage.scale)
        for i in range(stage.start, stage.stop):
            if stage.views == "sphere":
                views = sphere_step_views(i, window, canvas)
            elif stage.views == "blend":
                views = sch.blend_windows(i, window, canvas)
            else:
                views = sch.shifted_windows(i, window, canvas)
            total += sum(v.pixels for v in views) / math.prod(grid)
    plan = total / STEPS
    print(
        f"{name} Window pixels per latent pixel per step, latent {grid} (F, H, W), window "
        f"{window.size}; baseline MultiDiffusion stride 8"
    )
    rows = [
        ("shifted windows, no latitude shift (max)", max(flat)),
        ("shifted windows + latitude shift (max)", max(lat)),
        ("shifted windows + latitude shift (mean)", float(np.mean(lat))),
        ("sphere-view step on the 1/2 canvas*", float(np.mean(sphere))),
        (f"blended tail step (mean; last {sch.BLEND_STEPS} steps)", float(np.mean(blend))),
        (f"whole default plan, {STEPS} steps (mean)**", plan),
        ("MultiDiffusion, stride 8 (baseline)", multi),
    ]
    for label, value in rows:
        print(f"   {label:<46}{value:>8.3f}   MultiDiffusion / this = {multi / value:6.1f}×")
    print("   * in 1/2-canvas pixels: 44 views of 120° (DynamicScaler's set) + fill windows")
    print("   ** in full-canvas pixels per step; the coarse stages count at a quarter")


# --------------------------------------------------------------------------- 2. memory


def read_status() -> dict[str, int]:
    """VmRSS and VmHWM (peak) of this process, in bytes (Linux)."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            key, rest = line.split(":", 1)
            values[key] = int(rest.split()[0]) * 1024
    return values


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


# Known configs (the hub's stable-diffusion-v1-5 unet/vae/text_encoder/scheduler and
# guoyww/animatediff-motion-adapter-v1-5-2 config.json), so the bench needs no download.
SD15_UNET = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}
SD15_VAE = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
SD15_TEXT = {
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "vocab_size": 49408,
}
SD15_SCHEDULER = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}
ADAPTER_V152 = {
    "block_out_channels": [320, 640, 1280, 1280],
    "motion_activation_fn": "geglu",
    "motion_attention_bias": False,
    "motion_cross_attention_dim": None,
    "motion_layers_per_block": 2,
    "motion_max_seq_length": 32,
    "motion_mid_block_layers_per_block": 1,
    "motion_norm_num_groups": 32,
    "motion_num_attention_heads": 8,
    "use_motion_mid_block": True,
}
FULL = {"unet": SD15_UNET, "vae": SD15_VAE, "text": SD15_TEXT, "adapter": ADAPTER_V152}
#: The tests' tiny AnimateDiff shapes (tests/tiny_models.py), for the CPU dry run.
TINY = {
    "unet": {
        "block_out_channels": [32, 64],
        "layers_per_block": 1,
        "sample_size": 8,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "cross_attention_dim": 32,
        "norm_num_groups": 2,
        "attention_head_dim": 8,
    },
    "vae": {
        "block_out_channels": [16, 16, 16, 16],
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "norm_num_groups": 2,
        "layers_per_block": 1,
        "sample_size": 64,
    },
    "text": {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "max_position_embeddings": 77,
        "vocab_size": 1000,
    },
    "adapter": {
        "block_out_channels": [32, 64],
        "motion_layers_per_block": 1,
        "motion_norm_num_groups": 2,
        "motion_num_attention_heads": 4,
        "motion_max_seq_length": 32,
    },
}


def known_backend(
    configs: dict, window_frames: int, device: str, dtype: str, cpu_offload: bool = False
):
    """AnimateDiff from ``configs`` (``FULL`` or ``TINY``) with random weights, behind our
    backend, exactly as the loader assembles it (SD 1.5 UNet + motion adapter joined by
    ``AnimateDiffPipeline``, AnimateDiff's DDIM recipe on the base's scheduler config)."""
    import torch
    from diffusers import AnimateDiffPipeline, AutoencoderKL, MotionAdapter, UNet2DConditionModel
    from tiny_models import _tiny_clip_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModel

    from engine.generate.backends import AnimateDiffBackend, animatediff_scheduler
    from engine.generate.loading import ModelInfo, Source, pick_dtype

    torch_dtype = pick_dtype(dtype, device)
    torch.manual_seed(0)
    # Random init of ~1.3 B parameters is minutes on a CPU: build where the model runs.
    with torch.device("cpu" if cpu_offload else device):
        unet = UNet2DConditionModel.from_config(configs["unet"])
        adapter = MotionAdapter.from_config(configs["adapter"])
        vae = AutoencoderKL.from_config(configs["vae"])
        text = CLIPTextModel(CLIPTextConfig(**configs["text"]))
    tokenizer = _tiny_clip_tokenizer(Path(tempfile.mkdtemp()) / "tok")
    pipe = AnimateDiffPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        motion_adapter=adapter,
        scheduler=animatediff_scheduler(SD15_SCHEDULER),
    )
    if cpu_offload:
        pipe.to(dtype=torch_dtype)
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device, torch_dtype)
    blocks = configs["unet"]["block_out_channels"]
    info = ModelInfo(
        source=Source(
            "random AnimateDiff (SD 1.5 + adapter v1-5-2 configs)", Path("."), "random", ()
        ),  # fmt: skip
        vae_factor=2 ** (len(configs["vae"]["block_out_channels"]) - 1),
        sample_size=configs["unet"]["sample_size"],
        align=2 ** (len(blocks) - 1),
        max_frames=configs["adapter"]["motion_max_seq_length"],
        unet_class="UNetMotionModel",
        tokenizer_class="CLIPTokenizer",
        scheduler_config=SD15_SCHEDULER,
        train_timesteps=1000,
    )
    backend = AnimateDiffBackend(pipe, info, window_frames=window_frames, device=device)
    backend.offloaded = cpu_offload
    return backend


def full_size_wan_backend(window_frames: int, device: str):
    """The Wan2.1-T2V-1.3B transformer at full size, random weights, float32; a tiny VAE
    stands in (only its latent statistics are read: nothing is decoded here)."""
    import types

    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from engine.generate.wan import WanBackend, WanInfo

    torch.manual_seed(0)
    transformer = WanTransformer3DModel(**WAN_1_3B).to(device)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
    pipe = types.SimpleNamespace(transformer=transformer, vae=vae)
    info = WanInfo(Path("."), "random full-size Wan2.1-T2V-1.3B transformer", "random",
                   8, 4, (1, 2, 2), 16, 3.0, 1000)  # fmt: skip
    window = (window_frames, *WAN_WINDOW.size[1:])
    return WanBackend(pipe, info, window=window, device=device)


def measure(args: argparse.Namespace) -> None:
    """Child process: load, reset the peak, sample, print one JSON line."""
    import torch

    from engine.generate.loading import inspect_model, load_animatediff
    from engine.generate.sampler import GenerateRequest, _StepState, sample_latent
    from engine.generate.steprule import step_rule
    from engine.progress import JobContext

    torch.set_num_threads(args.threads)
    if args.measure == "tiny":
        backend = load_animatediff(
            inspect_model(args.model), window_frames=args.window_frames, device=args.device
        )
    elif args.measure == "wan":
        backend = full_size_wan_backend(args.window_frames, args.device)
    else:
        configs = TINY if args.measure == "known-tiny" else FULL
        backend = known_backend(
            configs, args.window_frames, args.device, args.dtype, args.cpu_offload
        )
    if args.decode and args.width >= 4096:
        backend.pipe.vae.enable_tiling()  # as generate does by itself at 4096 and wider
    cuda = args.device.startswith("cuda")
    request = GenerateRequest(
        "a misty pine forest",
        args.width,
        args.width // 2,
        args.frames,
        args.steps,
        guidance=7.5,
        schedule="windows",
    )
    ctx = JobContext()
    if args.measure == "wan":  # UMT5-XXL states of Wan's 512 tokens, random (4096 wide)
        from engine.generate.wan import WanEmbeds

        request = dataclasses.replace(request, guidance=1.0)
        embeds = WanEmbeds(cond=torch.randn(1, 512, 4096, device=backend.device), uncond=None)
    else:
        embeds = backend.encode_prompt(request.prompt, request.negative, request.guidance)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    reset_peak()
    loaded = read_status()["VmRSS"]
    start = time.perf_counter()
    if args.views:  # a budget of model calls on the full-size ring (CPU is too slow)
        f = backend.vae_factor
        frames = args.frames // getattr(backend, "time_factor", 1)
        grid = (frames, args.width // 2 // f, args.width // f)
        window = sch.WindowGrid(backend.window, backend.align)
        x = torch.randn(backend.latent_channels, *grid, device=backend.device)
        t = backend.timesteps(args.steps)[0]
        rule = step_rule(backend)
        step = _StepState(
            backend,
            rule,
            embeds,
            request.guidance,
            t,
            rule.level(t),
            rule.final_level,
            torch.Generator().manual_seed(0),
            ctx,
        )
        views = sch.shifted_windows(0, window, grid)[: args.views]
        latent, _ = step.run(x, views, window, 0, fill=False)
        calls = len(views)
    else:
        latent = sample_latent(backend, request, ctx).latent
        calls = None
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    decoded = decode_check(backend, latent) if args.decode else {}
    status = read_status()
    print(
        json.dumps(
            {
                "width": args.width,
                "loaded_bytes": loaded,
                "peak_bytes": status["VmHWM"],
                "seconds": seconds,
                "calls": calls,
                "steps": args.steps,
                "vram_peak_bytes": torch.cuda.max_memory_allocated() if cuda else None,
                "dtype": str(getattr(backend, "dtype", "")).removeprefix("torch."),
                "latent_mean_abs": float(latent.abs().mean()) if not args.views else None,
                **decoded,
            }
        )
    )


def decode_check(backend, latent) -> dict:
    """Decode frame 0 in the pipeline's dtype: finite or not, whether the VAE had to be
    upcast, and the time it took."""
    import torch

    from engine.errors import PanoLoopError

    start = time.perf_counter()
    try:
        image = backend.decode_pixels(latent[:, 0])
        finite = bool(torch.isfinite(image).all())
    except PanoLoopError:
        finite = False
    return {
        "decode_finite": finite,
        "vae_upcast": bool(getattr(backend, "vae_upcast", False)),
        "decode_seconds": time.perf_counter() - start,
    }


def cuda_check(args: argparse.Namespace) -> int:
    """Part 3: time per step, peak VRAM, fp16 decoding and CPU offload, one child per run."""
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            f"3. CUDA is not available (torch {torch.__version__}, CUDA build "
            f"{torch.version.cuda or 'none'}): the GPU check did not run and nothing was "
            "measured. Run it on a machine with an NVIDIA GPU, or dry-run the plumbing "
            "with --device cpu --tiny.",
            file=sys.stderr,
        )
        return 1
    tiny = args.tiny
    measure = "known-tiny" if tiny else "full"
    widths = (128, 256, 512) if tiny else (1024, 2048, 4096)
    frames = "4" if tiny else "16"
    dtype = (
        args.dtype if args.dtype != "auto" else ("float32" if args.device == "cpu" else "float16")
    )
    common = ["--measure", measure, "--frames", frames, "--window-frames", frames,
              "--device", args.device, "--dtype", dtype,
              "--threads", str(args.threads)]  # fmt: skip
    label = "tiny configs (dry run)" if tiny else "full-size AnimateDiff"
    print(f"3. GPU check on {args.device}, {label}, {dtype}, {frames}-frame windows, "
          "2 steps of shifted windows with guidance")  # fmt: skip
    gib = 1 << 30
    runs = {}
    for width in widths:
        r = child(*common, "--width", str(width), "--steps", "2", "--decode")
        runs[width] = r
        vram = f"{r['vram_peak_bytes'] / gib:6.2f} GiB" if r["vram_peak_bytes"] else "   n/a"
        print(f"   {width:>5}×{width // 2}: {r['seconds'] / 2:7.2f} s/step, peak VRAM {vram}, "
              f"decode {r['dtype']} finite={r['decode_finite']} upcast={r['vae_upcast']} "
              f"({r['decode_seconds']:.2f} s/frame)")  # fmt: skip
    first = widths[0]
    off = child(*common, "--width", str(first), "--steps", "2", "--cpu-offload")
    plain = runs[first]
    same = abs(off["latent_mean_abs"] - plain["latent_mean_abs"]) <= 1e-3 * plain["latent_mean_abs"]
    vram = "VRAM n/a"
    if off["vram_peak_bytes"]:
        vram = (f"peak VRAM {off['vram_peak_bytes'] / gib:.2f} GiB "
                f"(plain {plain['vram_peak_bytes'] / gib:.2f})")  # fmt: skip
    print(f"   CPU offload at {first}: {off['seconds'] / 2:.2f} s/step, {vram}, "
          f"same latent as the plain run: {same}")  # fmt: skip
    finite = all(r["decode_finite"] for r in runs.values())
    return 0 if same and finite else 1


def child(*flags: str) -> dict:
    cmd = [sys.executable, __file__, *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode or not lines:
        raise SystemExit(f"measurement failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def memory_rows(label: str, small: dict, large: dict) -> None:
    mib = 1 << 20
    ratio = large["peak_bytes"] / small["peak_bytes"]
    for r in (small, large):
        extra = r["peak_bytes"] - r["loaded_bytes"]
        what = f"{r['calls']} window call(s)" if r["calls"] else f"{r['steps']} step(s)"
        print(
            f"   {label} {r['width']:>5} px wide: peak {r['peak_bytes'] / mib:8.0f} MiB "
            f"(+{extra / mib:6.0f} MiB over the loaded model), {what} in {r['seconds']:.1f}s"
        )
    verdict = "within" if ratio <= 1.5 else "NOT within"
    print(f"   → peak at 4× width / peak at 1× = {ratio:.3f} ({verdict} 1.5×)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts", default="work,tiny,full,cuda,wan", help="comma-separated parts to run"
    )
    parser.add_argument("--full-frames", type=int, default=2, help="frames per full-size call")
    parser.add_argument(
        "--device", default="cuda", help="device of the GPU check (cpu only with --tiny)"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="GPU check with tiny configs (a dry run on the CPU)"
    )
    parser.add_argument(
        "--measure", choices=("tiny", "full", "known-tiny", "wan"), help=argparse.SUPPRESS
    )
    parser.add_argument("--cpu-offload", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--decode", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--window-frames", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--views", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args)
        return 0

    parts = set(args.parts.split(","))
    if "work" in parts:
        work_table()
    if parts & {"tiny", "full"}:
        print("2. Peak memory (RSS) at 4× the width; baseline: the same model at 1×")
    if "tiny" in parts:
        from tiny_models import build_tiny_animatediff

        with tempfile.TemporaryDirectory() as tmp:
            model = str(build_tiny_animatediff(Path(tmp) / "tiny"))
            tiny = [
                child("--measure", "tiny", "--model", model, "--width", str(w), "--device", "cpu")
                for w in (256, 1024)
            ]
        memory_rows("tiny AnimateDiff,", *tiny)
    if "full" in parts:
        n = str(args.full_frames)
        full = [
            child(
                "--measure",
                "full",
                "--width",
                str(w),
                "--frames",
                "16",
                "--window-frames",
                n,
                "--views",
                "1",
                "--threads",
                "2",
                "--device",
                "cpu",
            )  # fmt: skip
            for w in (1024, 4096)
        ]
        memory_rows(f"full-size AnimateDiff ({n}-frame window),", *full)

    if "wan" in parts:
        work_table(WAN_WINDOW, WAN_GRID_2K)
        n = str(args.full_frames)
        wan = [
            child(
                "--measure",
                "wan",
                "--width",
                str(w),
                "--frames",
                "16",
                "--window-frames",
                n,
                "--views",
                "1",
                "--threads",
                "2",
                "--device",
                "cpu",
            )  # fmt: skip
            for w in (1024, 4096)
        ]
        print("   peak memory (RSS) at 4× the width; baseline: the same model at 1×")
        memory_rows(f"full-size Wan 1.3B transformer ({n}-latent-frame window),", *wan)
        print("   CUDA (time per step, VRAM at 2048 and 4096 widths): not measured here")

    if "cuda" in parts:
        return cuda_check(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
