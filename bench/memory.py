"""The memory estimate (engine.generate.memory) against measured peaks, full-size models.

Builds the full-size AnimateDiff UNet (SD 1.5 UNet + v1.5 motion adapter, from their
default configs, random weights: memory does not depend on weight values) and SD's VAE,
in float32 on the CPU, and measures each part the estimate models, each in its own
process (glibc told to map large blocks so that freed memory leaves the resident set):
the peak RSS of one UNet call with guidance (batch 2 × frames) on a window,
and of one frame's decode (wrapped columns included), over the RSS once the model has
loaded. Each is printed beside the estimate for the same shape; the ratio
measured / estimated is what ``UNET_CALIBRATION`` and ``VAE_WORKING`` were fitted to.

Wan 2.1's VAE (``wanvae``) decodes one chunk of the ring as ``WanBackend.decode_video``
does: 12 latent frames (4 of warm-up, 8 kept), columns padded with 8 wrapped latent
columns each side; the peak sets ``WAN_VAE_WORKING``.

Run: ``.venv/bin/python bench/memory.py [--parts unet,vae,wanvae] [--threads 2]``; a few minutes
on 2 cores (each UNet case about 8 minutes at load 18).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.generate.backends import DECODE_PAD  # noqa: E402
from engine.generate.memory import (  # noqa: E402
    JobSize,
    ModelShape,
    WanShape,
    unet_call_bytes,
    vae_decode_bytes,
    wan_decode_bytes,
)

SD15 = ModelShape(
    unet_channels=(320, 640, 1280, 1280),
    unet_layers=2,
    unet_attention=(True, True, True, False),
    vae_channels=(128, 256, 512, 512),
    vae_sample_size=512,
    latent_channels=4,
    vae_factor=8,
    component_params={},
)
#: (frames, latent rows, latent cols) of the UNet calls measured.
UNET_CASES = ((2, 32, 32), (2, 48, 48), (4, 48, 48))
#: Latent (rows, cols) of the frames decoded (before the 2 × 8 wrapped columns).
VAE_CASES = ((32, 64), (64, 128))
#: Wan 2.1's VAE (diffusers' defaults: 96 base channels, 8× space, 4× time).
WAN_VAE = WanShape(width=1536, ffn=8960, patch=(1, 2, 2), vae_base=96, latent_channels=16,
                   vae_factor=8, time_factor=4, text_tokens=512, text_width=4096,
                   component_params={})  # fmt: skip
#: Latent (rows, cols) of the Wan chunks decoded (warm-up + chunk latent frames each).
WAN_VAE_CASES = ((8, 16),)  # about 15 minutes on 2 loaded cores


def read_status() -> dict[str, int]:
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            key, rest = line.split(":", 1)
            values[key] = int(rest.split()[0]) * 1024
    return values


def measure(kind: str, case: list[int]) -> dict:
    import torch

    torch.manual_seed(0)
    if kind == "unet":
        from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

        unet = UNetMotionModel.from_unet2d(
            UNet2DConditionModel(sample_size=64, cross_attention_dim=768), MotionAdapter()
        ).eval()
        frames, rows, cols = case
        sample = torch.randn(2, 4, frames, rows, cols)
        states = torch.randn(2 * frames, 77, 768)
        run = lambda: unet(sample, torch.tensor(500), encoder_hidden_states=states)  # noqa: E731
    elif kind == "wanvae":
        from diffusers import AutoencoderKLWan

        vae = AutoencoderKLWan().eval()  # diffusers' defaults are Wan 2.1's VAE
        frames, rows, cols = case
        z = torch.randn(1, 16, frames, rows, cols + 2 * DECODE_PAD)
        run = lambda: vae.decode(z)  # noqa: E731
    else:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            latent_channels=4,
            sample_size=512,
        ).eval()
        rows, cols = case
        z = torch.randn(1, 4, rows, cols + 16)
        run = lambda: vae.decode(z)  # noqa: E731
    with torch.inference_mode():
        # Give back what building the model freed, so the peak counts only the call.
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        loaded = read_status()["VmRSS"]
        run()
    return {"extra": read_status()["VmHWM"] - loaded}


def child(kind: str, case: tuple[int, ...], threads: int) -> int:
    cmd = [sys.executable, __file__, "--measure", kind, "--case", ",".join(map(str, case)),
           "--threads", str(threads)]  # fmt: skip
    # Every allocation of 64 KiB or more is its own mapping, returned when freed: the
    # resident set then follows the live tensors (glibc would otherwise keep freed heap).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode or not lines:
        raise SystemExit(f"measurement failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])["extra"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--parts", default="unet,vae,wanvae", help="comma-separated: unet, vae, wanvae"
    )
    parser.add_argument("--measure", choices=("unet", "vae", "wanvae"), help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        import torch

        torch.set_num_threads(args.threads)
        case = [int(v) for v in args.case.split(",")]
        print(json.dumps(measure(args.measure, case)))
        return 0
    mib = 1 << 20
    parts = set(args.parts.split(","))
    print("UNet call with guidance (SD 1.5 + v1.5 adapter, float32, CPU): measured / estimated")
    for case in UNET_CASES if "unet" in parts else ():
        job = JobSize(case[2] * 16, case[1] * 8, case[0], case[0], case, True, "float32")
        measured, estimated = child("unet", case, args.threads), unet_call_bytes(SD15, job)
        print(f"   window {case} (F, h, w): {measured / mib:7.0f} MiB / {estimated / mib:7.0f} MiB"
              f" = {measured / estimated:.2f}")  # fmt: skip
    print("VAE decode of one frame (SD VAE, float32, CPU, 8 wrapped columns each side)")
    for rows, cols in VAE_CASES if "vae" in parts else ():
        job = JobSize(cols * 8, rows * 8, 1, 1, (1, 64, 64), True, "float32")
        measured = child("vae", (rows, cols), args.threads)
        estimated = vae_decode_bytes(SD15, job)
        print(f"   {cols * 8}x{rows * 8} px: {measured / mib:7.0f} MiB / {estimated / mib:7.0f} MiB"
              f" = {measured / estimated:.2f}")  # fmt: skip
    print("Wan VAE decode of one chunk with its warm-up (12 latent frames, float32, CPU)")
    for rows, cols in WAN_VAE_CASES if "wanvae" in parts else ():
        job = JobSize(cols * 8, rows * 8, 48, 48, (1, rows, cols), False, "float32")
        measured = child("wanvae", (12, rows, cols), args.threads)
        estimated = wan_decode_bytes(WAN_VAE, job)
        print(f"   {cols * 8}x{rows * 8} px: {measured / mib:7.0f} MiB / {estimated / mib:7.0f} MiB"
              f" = {measured / estimated:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
