"""Memory before the run: estimate a generate job's peak from the model's configs, refuse
what cannot fit, and say what to change.

Everything here reads JSON configs and safetensors *headers* only (a few KiB per file),
so it runs before any weight loads. Two budgets are checked:

- **device** (the GPU's free memory; on the CPU the machine's available RAM): the
  weights, plus the larger of one UNet call and one frame's VAE decode (they never run
  at once), plus the ring latent and its working copies;
- **host** (RAM): the decoded frames and, when the rate is interpolated, the output
  frames, held until they are written. On the CPU both budgets are the same RAM and
  are added.

With ``--ray`` the model and the ring live in different processes: the driver holds the
ring latent and the frames (:func:`check_driver_fits`, before any cluster is reached)
and every worker holds a whole model, its calls and decodes (:func:`check_workers_fit`,
against what each worker's node measures before any worker loads; workers placed on one
node share its RAM, with the driver too on a local cluster).

Assumptions (each term is a stated model, not a measurement of this machine):

- Weights: the parameter count from the safetensors headers of the components that
  load (UNet, motion adapter, VAE, text encoder), at the run's dtype. With CPU offload
  only the largest component sits on the device at a time.
- UNet activations, one window call: batch B = window frames × 2 with guidance (× 1
  without), latent window h × w. Attention runs through memory-efficient scaled
  dot-product attention (no tokens × tokens matrix: PyTorch's SDPA on CUDA and CPU).
  Held at once: the skip connections of the down path (``conv_in`` output, every
  down-block ResNet output and every downsampler output), plus the working set of the
  widest transformer block, ``TRANSFORMER_WORKING`` × channels × tokens at its level
  (GEGLU feed-forward: its 8·C projection, the 4·C gate and product, the residual).
  ``UNET_CALIBRATION`` scales the sum to what was measured (see below).
- VAE decode, one frame: the frame plus ``DECODE_PAD`` wrapped latent columns each side;
  held at once at each decoder level, ``VAE_WORKING`` × the level's input channels ×
  its pixels (a ResNet's input, its normalised copy and its output, the upsampler's
  nearest-neighbour copy); the peak is the widest level, full resolution with SD's VAE.
  With VAE tiling the decoder sees one tile (``sample_size`` pixels square) at a time
  and the blended tiles of the frame (3 channels, float32, 25% overlap) are held.
- Latents: the ring latent (C, F, H/f, W/f) in float32 and ``LATENT_COPIES`` working
  copies (the step's output, the blended tail's sums and weights, gathered windows).
- Host frames: denoised frames and output frames as 8-bit RGB, plus the interpolation's
  few float32 frames.

Calibration (``bench/memory.py``: peak RSS over the loaded model, random weights,
float32, CPU, glibc returning freed blocks): the full-size SD 1.5 + v1.5 motion adapter
UNet with guidance at windows (2, 32, 32) and (2, 48, 48) peaked at 183 and 329 MiB.
Their difference — what grows with the tokens — is 1.01× this model's (so
``UNET_CALIBRATION`` = 1); the rest, 66 MiB, does not grow (``UNET_FIXED``). SD's VAE
decoding one 512×256 frame (640×256 with the wrapped columns) peaked at 618 MiB, which
sets ``VAE_WORKING`` (one size only: a fixed part, if any, is counted as growing, so
larger frames are overestimated rather than under). Not measured: CUDA (its allocator's rounding and
cuDNN workspaces come on top), float16 (assumed to halve every activation).
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadInput
from .backends import DECODE_PAD
from .wan import DECODE_CHUNK, DECODE_WARMUP

GIB = 1 << 30
#: Feed-forward working set of a transformer block, in units of its channels × tokens.
TRANSFORMER_WORKING = 18
#: Measured / modelled growth of one UNet call with its tokens (fitted, see the docstring).
UNET_CALIBRATION = 1.0
#: What one UNet call needs whatever its size (measured on the CPU: 66 MiB in float32 at
#: batch 4 — the time embedding, text states, convolution weights repacked per call).
UNET_FIXED = 64 << 20
#: Tensors of a decoder level's input size held at once while decoding (fitted: SD's VAE
#: decoding 640×256 px in float32 peaked at 618 MiB, 3.9 × 256 channels × its pixels).
VAE_WORKING = 3.9
#: Working copies of the ring latent besides the latent itself.
LATENT_COPIES = 4
#: Widths at and above which the VAE decodes in tiles by itself (pixels).
AUTO_TILING_WIDTH = 4096
#: 2:1 sizes offered when a job does not fit, largest first (pixels wide).
SUGGESTED_WIDTHS = (5760, 4096, 2048, 1024)
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
#: safetensors dtype names → bytes per element (for counting parameters).
SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I8": 1,
                     "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}  # fmt: skip
SHARD = re.compile(r"-\d{5}-of-\d{5}")


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs from a model, read from its configs and weight headers."""

    unet_channels: tuple[int, ...]  # block_out_channels
    unet_layers: int  # layers_per_block
    unet_attention: tuple[bool, ...]  # per level: has a transformer block
    vae_channels: tuple[int, ...]  # block_out_channels (encoder order)
    vae_sample_size: int  # pixels of one VAE tile
    latent_channels: int
    vae_factor: int
    component_params: dict[str, int]  # parameters per loaded component


@dataclass(frozen=True)
class JobSize:
    """The job the estimate is for (pixels, frame counts, options)."""

    width: int
    height: int
    denoised_frames: int
    output_frames: int
    window: tuple[int, int, int]  # (frames, latent rows, latent cols) of one UNet call
    guidance: bool
    dtype: str  # "float32" | "float16" | "bfloat16"
    cpu_offload: bool = False
    vae_tiling: bool = False


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes by part; ``device`` and ``host`` are what the budgets are checked against."""

    weights: int
    unet_call: int  # one denoiser call: a UNet's, or a Wan transformer's
    vae_decode: int
    latents: int
    frames: int
    call_name: str = "UNet"

    @property
    def device(self) -> int:
        return self.weights + max(self.unet_call, self.vae_decode) + self.latents

    @property
    def host(self) -> int:
        return self.frames

    @property
    def model(self) -> int:
        """What a process holding the model needs (a Ray worker): the weights and the
        larger of one denoiser call and one decode."""
        return self.weights + max(self.unet_call, self.vae_decode)

    @property
    def ring(self) -> int:
        """What the process holding the ring needs besides a model (a Ray driver): the
        ring latent with its copies, and the frames until they are written."""
        return self.latents + self.frames

    def parts(self, frames: bool = False) -> str:
        """``weights 2.8, UNet call 1.8 or VAE decode 3.1, latents 0.3 GiB`` (+ frames)."""
        text = (f"weights {gib(self.weights)}, {self.call_name} call {gib(self.unet_call)} "
                f"or VAE decode {gib(self.vae_decode)}, latents {gib(self.latents)}")  # fmt: skip
        return text + (f", frames {gib(self.frames)}" if frames else "") + " GiB"


def gib(value: float) -> str:
    return f"{value / GIB:.1f}"


# --------------------------------------------------------------------------- reading


def read_model_shape(
    folder: Path, adapter_folder: Path | None = None, params: dict[str, int] | None = None
) -> ModelShape:
    """The shape of a diffusers AnimateDiff/SD folder (and motion adapter), configs only;
    ``params`` (per component, e.g. from hub headers) replaces counting the files.

    Configs are not trusted: a key that is missing or not what diffusers writes falls
    back to the default of the diffusers class (``UNet2DConditionModel``,
    ``AutoencoderKL``); per-block lists count their largest entry.
    """
    unet = _config(folder / "unet" / "config.json")
    vae = _config(folder / "vae" / "config.json")
    down = unet.get("down_block_types")
    if not isinstance(down, list):
        down = ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    vae_channels = _ints(vae.get("block_out_channels"), (64,))
    counted = {name: count_params(folder / name) for name in ("unet", "vae", "text_encoder")}
    if adapter_folder is not None:
        counted["motion_adapter"] = count_params(adapter_folder)
    # Counts from the chosen variant's headers (a hub model not yet downloaded) win.
    counted.update({name: n for name, n in (params or {}).items() if n})
    return ModelShape(
        unet_channels=_ints(unet.get("block_out_channels"), (320, 640, 1280, 1280)),
        unet_layers=max(_ints(unet.get("layers_per_block"), (2,))),
        unet_attention=tuple("CrossAttn" in str(kind) for kind in down),
        vae_channels=vae_channels,
        vae_sample_size=max(_ints(vae.get("sample_size"), (512,))),
        latent_channels=max(_ints(vae.get("latent_channels"), (4,))),
        vae_factor=2 ** (len(vae_channels) - 1),
        component_params=counted,
    )


def _ints(value: Any, default: tuple[int, ...]) -> tuple[int, ...]:
    """A positive int or a list of them as a tuple; ``default`` for anything else."""
    values = value if isinstance(value, list) else [value]
    if values and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        return tuple(values)
    return default


def _config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def count_params(folder: Path) -> int:
    """Parameters of the weights in ``folder``, from safetensors headers (no tensor data).

    Files of one variant (``model.safetensors``, ``model.fp16.safetensors``, shards
    ``-0000k-of-0000n`` summed) are counted once: the largest variant. A file whose
    header cannot be read counts as its size in float32.
    """
    variants: dict[str, int] = {}
    for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else ():
        key = SHARD.sub("", path.name)
        variants[key] = variants.get(key, 0) + _file_params(path)
    return max(variants.values(), default=0)


def _file_params(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100 << 20:
                raise ValueError("header too large")
            header = json.loads(handle.read(length))
        total = 0
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            start, stop = entry["data_offsets"]
            total += (stop - start) // SAFETENSORS_BYTES.get(entry["dtype"], 4)
        return total
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return os.path.getsize(path) // 4 if path.is_file() else 0


# --------------------------------------------------------------------------- estimate


def estimate(shape: ModelShape | WanShape, job: JobSize) -> MemoryEstimate:
    """The peak memory of ``job`` on a model of ``shape`` (see the module docstring)."""
    if isinstance(shape, WanShape):
        return wan_estimate(shape, job)
    size = DTYPE_BYTES[job.dtype]
    params = shape.component_params
    if job.cpu_offload:
        # The UNet and its motion modules are one model under offload; the rest waits.
        unet = params.get("unet", 0) + params.get("motion_adapter", 0)
        weights = max(unet, params.get("vae", 0), params.get("text_encoder", 0)) * size
    else:
        weights = sum(params.values()) * size
    return MemoryEstimate(
        weights=weights,
        unet_call=unet_call_bytes(shape, job),
        vae_decode=vae_decode_bytes(shape, job),
        latents=latent_bytes(shape, job),
        frames=frame_bytes(job),
    )


def unet_call_bytes(shape: ModelShape, job: JobSize) -> int:
    """Peak activations of one UNet call on one window (bytes)."""
    frames, rows, cols = job.window
    batch = frames * (2 if job.guidance else 1)
    tokens = rows * cols
    skips = shape.unet_channels[0] * tokens  # conv_in's output
    working = 0
    last = len(shape.unet_channels) - 1
    for level, channels in enumerate(shape.unet_channels):
        level_tokens = tokens / 4**level
        skips += shape.unet_layers * channels * level_tokens
        if level < last:
            skips += channels * level_tokens / 4  # the downsampler's output
        if level < len(shape.unet_attention) and shape.unet_attention[level]:
            working = max(working, TRANSFORMER_WORKING * channels * level_tokens)
        else:
            working = max(working, 4 * channels * level_tokens)  # a ResNet's tensors
    per_item = (skips + working) * UNET_CALIBRATION
    return int(batch * per_item * DTYPE_BYTES[job.dtype]) + UNET_FIXED


def vae_decode_bytes(shape: ModelShape, job: JobSize) -> int:
    """Peak activations of decoding one frame (bytes), wrapped columns included."""
    f = shape.vae_factor
    if job.vae_tiling:
        side = shape.vae_sample_size
        rows, cols = side, side
        # Every decoded tile of the frame is kept before blending: 3 channels, float32,
        # tiles overlapping by a quarter.
        held = 3 * 4 * job.height * (job.width + 2 * DECODE_PAD * f) / 0.75**2
    else:
        rows, cols = job.height, job.width + 2 * DECODE_PAD * f
        held = 0
    peak = 0.0
    channels = list(reversed(shape.vae_channels))  # decoder order: deepest first
    for level, width in enumerate(channels):
        pixels = rows * cols / 4 ** (len(channels) - 1 - level)
        incoming = channels[level - 1] if level else width
        # The level's input is upsampled to its resolution before its ResNets run.
        peak = max(peak, VAE_WORKING * max(width, incoming) * pixels)
    return int(peak * DTYPE_BYTES[job.dtype] + held)


def latent_bytes(shape: ModelShape, job: JobSize) -> int:
    """The ring latent in float32 with its working copies (bytes)."""
    f = shape.vae_factor
    cells = shape.latent_channels * job.denoised_frames * (job.height // f) * (job.width // f)
    return int(cells * 4 * (1 + LATENT_COPIES))


def frame_bytes(job: JobSize) -> int:
    """Decoded and output 8-bit frames held in RAM until written, plus, when the rate is
    interpolated, the interpolation's working frames (about six in float32)."""
    frame = job.width * job.height * 3
    if job.output_frames == job.denoised_frames:
        return frame * job.denoised_frames
    return frame * (job.denoised_frames + job.output_frames) + 6 * frame * 4


# --------------------------------------------------------------------------- Wan 2.1

#: Tensors of the feed-forward width held per token in a Wan block (its 4·C-ish hidden
#: layer and GELU output), and of the model width (q, k, v, attention output, norm,
#: residual). Fitted: the full-size Wan2.1-T2V-1.3B transformer (1536 wide, 8960 ffn)
#: on one 1 × 60 × 104 latent window without guidance (1,560 tokens) peaked at 164 MiB
#: over the loaded model in float32 on the CPU; this model gives 170 MiB with the text
#: states (one size only: a fixed part, if any, is counted as growing).
WAN_FFN_COPIES, WAN_WIDTH_COPIES = 2, 6
#: Tensors of the decoder's full-resolution width (``base_dim`` channels × the 4 frames
#: one latent frame decodes to) held at once while Wan's VAE decodes a latent frame
#: (ResNet tensors, the causal convolutions' padded inputs and cached frames). Fitted
#: with ``bench/memory.py --parts wanvae``: the full-size Wan 2.1 VAE decoding 12 latent
#: frames of 8 × 32 (64 × 256 px, wrapped columns included) peaked at 376 MiB over the
#: loaded model in float32 on the CPU (one size only: a fixed part, if any, is counted as
#: growing, so large frames are overestimated rather than under).
WAN_VAE_WORKING = 14.6
#: Copies of a decoded chunk held at once (the decoder's concatenated output, its
#: clamped and scaled copy) in float32, before the frames become 8-bit.
WAN_CLIP_COPIES = 3
#: Wan's VAE tile when tiling is on (diffusers' ``tile_sample_min_height/width``).
WAN_VAE_TILE = 256


@dataclass(frozen=True)
class WanShape:
    """What the estimate needs from a Wan 2.1 pipeline, from configs and weight headers."""

    width: int  # the transformer's model width (heads × head dim)
    ffn: int  # its feed-forward width
    patch: tuple[int, int, int]  # (frames, rows, cols) per token
    vae_base: int  # the VAE decoder's full-resolution channels
    latent_channels: int
    vae_factor: int
    time_factor: int
    text_tokens: int  # UMT5 states per prompt
    text_width: int
    component_params: dict[str, int]  # transformer, vae, text_encoder


def read_wan_shape(folder: Path, params: dict[str, int] | None = None) -> WanShape:
    """The shape of a diffusers Wan 2.1 folder, configs only (untrusted: a key that is
    missing or not what diffusers writes falls back to Wan2.1-T2V-1.3B's value).
    ``params`` (per component, e.g. from hub headers) replaces counting the files."""
    transformer = _config(folder / "transformer" / "config.json")
    vae = _config(folder / "vae" / "config.json")
    heads = max(_ints(transformer.get("num_attention_heads"), (12,)))
    head_dim = max(_ints(transformer.get("attention_head_dim"), (128,)))
    patch = _ints(transformer.get("patch_size"), (1, 2, 2))
    downsample = vae.get("temperal_downsample")
    if not isinstance(downsample, list):
        downsample = [False, True, True]
    counted = {name: count_params(folder / name) for name in ("transformer", "vae", "text_encoder")}
    counted.update({name: n for name, n in (params or {}).items() if n})
    return WanShape(
        width=heads * head_dim,
        ffn=max(_ints(transformer.get("ffn_dim"), (8960,))),
        patch=patch if len(patch) == 3 else (1, 2, 2),
        vae_base=max(_ints(vae.get("base_dim"), (96,))),
        latent_channels=max(_ints(vae.get("z_dim"), (16,))),
        vae_factor=2 ** len(downsample),
        time_factor=2 ** sum(bool(d) for d in downsample),
        text_tokens=512,
        text_width=max(_ints(transformer.get("text_dim"), (4096,))),
        component_params=counted,
    )


def wan_estimate(shape: WanShape, job: JobSize) -> MemoryEstimate:
    """The peak memory of ``job`` on a Wan pipeline (the VAE stays in float32)."""
    size = DTYPE_BYTES[job.dtype]
    params = shape.component_params
    sizes = {"transformer": size, "text_encoder": size, "vae": 4}
    parts = {name: params.get(name, 0) * sizes[name] for name in sizes}
    weights = max(parts.values()) if job.cpu_offload else sum(parts.values())
    latent_frames = max(1, job.denoised_frames // shape.time_factor)
    f = shape.vae_factor
    latents = shape.latent_channels * latent_frames * (job.height // f) * (job.width // f)
    return MemoryEstimate(
        weights=weights,
        unet_call=wan_call_bytes(shape, job),
        vae_decode=wan_decode_bytes(shape, job),
        latents=int(latents * 4 * (1 + LATENT_COPIES)),
        frames=frame_bytes(job),
        call_name="transformer",
    )


def wan_call_bytes(shape: WanShape, job: JobSize) -> int:
    """Peak activations of one Wan transformer call on one window (bytes)."""
    frames, rows, cols = job.window
    pf, ph, pw = shape.patch
    tokens = -(-frames // pf) * (rows // ph) * (cols // pw)
    batch = 2 if job.guidance else 1
    per_token = WAN_FFN_COPIES * shape.ffn + WAN_WIDTH_COPIES * shape.width
    text = batch * shape.text_tokens * shape.text_width
    return int((batch * tokens * per_token + text) * DTYPE_BYTES[job.dtype])


def wan_decode_bytes(shape: WanShape, job: JobSize) -> int:
    """Peak of decoding one chunk of the ring with wrapped temporal context (bytes,
    float32): the decoder's working set on one latent frame, plus the decoded chunk."""
    pad = DECODE_PAD * shape.vae_factor
    rows, cols = job.height, job.width + 2 * pad
    if job.vae_tiling:
        rows, cols = min(rows, WAN_VAE_TILE), min(cols, WAN_VAE_TILE)
    working = WAN_VAE_WORKING * shape.vae_base * shape.time_factor * rows * cols
    chunk = DECODE_WARMUP + DECODE_CHUNK
    clip_frames = 1 + shape.time_factor * (chunk - 1)
    clip = WAN_CLIP_COPIES * 3 * clip_frames * job.height * (job.width + 2 * pad)
    return int((working + clip) * 4)


# --------------------------------------------------------------------------- budgets


#: How a refusal names the budget of each device kind.
BUDGET_WORDS = {"cuda": "this GPU has", "mps": "this Mac's GPU has", "cpu": "this machine has"}


def available_memory(device: str) -> int | None:
    """Bytes free for this job on ``device``; None when unknown.

    CUDA: the GPU's free memory (``torch.cuda.mem_get_info``). MPS: Metal's recommended
    working set minus what is allocated. CPU: the machine's available RAM (psutil, which
    accelerate brings; ``/proc/meminfo`` otherwise).
    """
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    if kind == "mps" and hasattr(torch.mps, "recommended_max_memory"):
        return int(torch.mps.recommended_max_memory() - torch.mps.current_allocated_memory())
    return host_available()


def host_available() -> int | None:
    """Available RAM in bytes, or None when it cannot be read."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - accelerate brings psutil
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_fits(
    shape: ModelShape,
    job: JobSize,
    device: str,
    *,
    free: int | None = None,
    host: int | None = None,
) -> MemoryEstimate:
    """Refuse (BadInput, one line with the numbers and what to change) a job that cannot fit.

    ``free`` and ``host`` override the measured budgets (tests, planning). A budget that
    cannot be measured is not checked: a job is never refused on a guess.
    """
    import torch

    kind = torch.device(device).type
    on_cpu = kind == "cpu"
    if free is None:
        free = available_memory(device)
    if host is None:
        host = free if on_cpu else host_available()
    need = estimate(shape, job)
    device_need = need.device + (need.host if on_cpu else 0)
    short_device = free is not None and device_need > free
    short_host = not on_cpu and host is not None and need.host > host
    if not (short_device or short_host):
        return need
    made = _made(job)
    if short_device:
        where = BUDGET_WORDS.get(kind, "this device has")
        said = (f"{made} needs about {gib(device_need)} GiB ({need.parts(on_cpu)}), "
                f"but {where} {gib(free)} GiB free")  # fmt: skip
    else:
        said = (f"{made} needs about {gib(need.host)} GiB of RAM for its frames, "
                f"but this machine has {gib(host)} GiB available")  # fmt: skip
    raise BadInput(f"{said}: {what_to_change(shape, job, device, free, host)}")


def what_to_change(
    shape: ModelShape, job: JobSize, device: str, free: int | None, host: int | None
) -> str:
    """The smallest change that fits: an option, then a smaller size, then fewer frames."""
    import torch

    on_cpu = torch.device(device).type == "cpu"

    def fits(candidate: JobSize) -> bool:
        need = estimate(shape, candidate)
        device_need = need.device + (need.host if on_cpu else 0)
        return (free is None or device_need <= free) and (
            on_cpu or host is None or need.host <= host
        )

    return smallest_change(job, fits, offload=not on_cpu)


def smallest_change(job: JobSize, fits: Any, *, offload: bool) -> str:
    """The first change of ``job`` that ``fits`` (a JobSize → bool) accepts: an option
    (``--cpu-offload`` when ``offload``, ``--vae-tiling``), then a smaller 2:1 size."""
    options = []
    if offload and not job.cpu_offload:
        options.append(("--cpu-offload", {"cpu_offload": True}))
    if not job.vae_tiling:
        options.append(("--vae-tiling", {"vae_tiling": True}))
    for flag, change in options:
        if fits(_replace(job, **change)):
            return f"add {flag}"
    if len(options) == 2 and fits(_replace(job, cpu_offload=True, vae_tiling=True)):
        return "add --cpu-offload and --vae-tiling"
    for width in SUGGESTED_WIDTHS:
        if width < job.width:
            smaller = _replace(
                job,
                width=width,
                height=width // 2,
                vae_tiling=width >= AUTO_TILING_WIDTH or job.vae_tiling,
            )
            if fits(smaller):
                return f"choose {width}x{width // 2}"
    return "choose a smaller size and fewer frames, or a machine with more memory"


# --------------------------------------------------------------------------- Ray


def check_driver_fits(
    shape: ModelShape | WanShape, job: JobSize, *, host: int | None = None
) -> MemoryEstimate:
    """``generate --ray``'s driver holds the ring latent and the frames, not the model:
    refuse (BadInput, one line) a job whose :attr:`MemoryEstimate.ring` exceeds this
    machine's available RAM (``host`` overrides it), before any cluster is reached."""
    need = estimate(shape, job)
    if host is None:
        host = host_available()
    if host is None or need.ring <= host:
        return need

    def fits(candidate: JobSize) -> bool:
        return estimate(shape, candidate).ring <= host

    raise BadInput(
        f"{_made(job)} needs about {gib(need.ring)} GiB of RAM on this machine for its "
        f"ring latent and frames (latents {gib(need.latents)}, frames {gib(need.frames)} "
        f"GiB), but it has {gib(host)} GiB available: "
        f"{smallest_change(job, fits, offload=False)}"
    )


def check_workers_fit(
    shape: ModelShape | WanShape,
    job: JobSize,
    device: str,
    *,
    workers: int,
    driver: bool,
    free: int | None,
    where: str,
) -> MemoryEstimate:
    """Refuse (BadInput, one line) Ray workers that cannot hold the model where they run.

    ``free``: bytes available, measured on the worker's node — its GPU's free memory on
    CUDA (one GPU per worker, so ``workers`` is 1 there), else the node's available RAM,
    which the node's ``workers`` share with each other and, when ``driver`` (the driver
    runs on that node, a local cluster), with the ring and frames the driver holds. Each
    worker needs :attr:`MemoryEstimate.model`. ``where`` names the node in the message.
    An unmeasured budget (None) is not checked.
    """
    import torch

    on_cpu = torch.device(device).type == "cpu"

    def total(need: MemoryEstimate, count: int) -> int:
        return count * need.model + (need.ring if on_cpu and driver else 0)

    need = estimate(shape, job)
    if free is None or total(need, workers) <= free:
        return need
    what = "RAM" if on_cpu else "GPU memory"
    parts = (f"weights {gib(need.weights)}, {need.call_name} call {gib(need.unet_call)} "
             f"or VAE decode {gib(need.vae_decode)} GiB")  # fmt: skip
    said = f"{workers} Ray worker{'s' if workers > 1 else ''} on {where} need"
    said += f"{'' if workers > 1 else 's'} about {gib(total(need, workers))} GiB of {what}"
    said += f" ({gib(need.model)} GiB each: {parts}"
    said += f"; the driver's ring and frames {gib(need.ring)} GiB)" if on_cpu and driver else ")"
    fitting = next((k for k in range(workers - 1, 0, -1) if total(need, k) <= free), 0)
    if fitting:
        change = f"{fitting} fit there: use fewer --ray-workers, or nodes with more memory"
    else:
        change = smallest_change(
            job, lambda c: total(estimate(shape, c), workers) <= free, offload=not on_cpu
        )
    raise BadInput(f"{_made(job)}: {said}, but it has {gib(free)} GiB available: {change}")


def _made(job: JobSize) -> str:
    return (f"generate {job.width}x{job.height} ({job.denoised_frames} frames denoised, "
            f"{job.output_frames} written)")  # fmt: skip


def _replace(job: JobSize, **changes: Any) -> JobSize:
    values = {name: getattr(job, name) for name in JobSize.__dataclass_fields__}
    values.update(changes)
    return JobSize(**values)


def auto_vae_tiling(width: int, asked: bool) -> bool:
    """VAE tiling is on when asked for, and by itself at widths ≥ ``AUTO_TILING_WIDTH``."""
    return asked or width >= AUTO_TILING_WIDTH


def dtype_name(dtype: Any) -> str:
    """``torch.float16`` → ``"float16"``."""
    return str(dtype).removeprefix("torch.")
