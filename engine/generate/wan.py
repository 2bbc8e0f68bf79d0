"""Wan 2.1 (text to video, diffusers' ``WanPipeline``) behind :class:`.backends.Backend`.

Wan is a flow-matching model: its transformer predicts a velocity, so this backend
names :class:`.steprule.FlowMatchRule` and the ring sampler takes flow-match Euler
steps with the model's timestep shift. Its VAE compresses space by 8 and time by 4
and is causal in time (a clip of 1 + 4n frames ↔ 1 + n latent frames, the first latent
frame standing for one picture). A ring of latents is therefore not a ring of pixels;
here every latent frame stands for 4 frames (no special first frame) and
:meth:`WanBackend.decode_video` runs the causal decoder with wrapped temporal context:
each chunk of latent frames is preceded by the latent frames that come before it on
the ring (the last ones before the first), and the frames decoded from that warm-up
are dropped. Pixel frame 0 then follows the last frame as any frame follows its
predecessor. Columns wrap as for AnimateDiff (padded with wrapped latent columns,
decoded, cropped).

Loading follows :mod:`.backends`: configs are read and LoRAs checked (safetensors
only, shapes against the base transformer's weight headers) before any weights load.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadInput, PanoLoopError
from .backends import DECODE_PAD
from .loading import (
    PICKLE_SUFFIXES,
    Source,
    _read_config,
    _read_json,
    check_weights,
    choose_variant,
    fetch_weights,
    locate_source,
    pick_device,
    resolve_source,
    weight_shapes,
)
from .steprule import FlowMatchRule

#: ``_class_name`` of a Wan 2.1 text-to-video pipeline in ``model_index.json``.
WAN_PIPELINE = "WanPipeline"
#: Wan2.1-T2V-1.3B's training clip: 81 frames of 480×832 pixels.
WAN_TRAIN_FRAMES, WAN_TRAIN_HEIGHT, WAN_TRAIN_WIDTH = 81, 480, 832
#: Wan's clips were sampled at 16 frames per second.
WAN_MODEL_FPS = 16.0
#: Wan's text length (UMT5 tokens) in diffusers' pipeline.
WAN_TEXT_TOKENS = 512
#: Latent frames of wrapped temporal context decoded (and dropped) before each chunk.
DECODE_WARMUP = 4
#: Latent frames after the first of the constant clip a still is encoded from (the last
#: one is the still's ring latent; see :meth:`WanBackend.encode_still`).
ENCODE_STILL_LATENT_FRAMES = 8
#: Latent frames decoded per chunk (memory grows with it; cost is (chunk + warm-up) / chunk).
DECODE_CHUNK = 8
#: The folders of a Wan pipeline that are fetched and loaded (configs, tokenizer files).
WAN_COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
#: The components with weights (checked for safetensors in the chosen variant).
WAN_WEIGHTED = ("transformer", "vae", "text_encoder")


def model_class(source: str, *, offline: bool, revision: str | None = None) -> str:
    """The pipeline class a model folder or hub id declares (``_class_name``), or ``""``
    (for a hub id only ``model_index.json`` is fetched)."""
    folder = locate_source(source, offline=offline, revision=revision, components=()).folder
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        return ""  # inspect_model names the missing file
    return str(_read_config(index_path, f"model {source}").get("_class_name", ""))


# --------------------------------------------------------------------------- inspection


@dataclass(frozen=True)
class WanInfo:
    """What a Wan pipeline's configs say, read before any weights load."""

    folder: Path  # the configs (a hub id's weights arrive with :func:`load_wan`)
    source: str
    revision: str  # hub commit, or ``sha256:…`` fingerprint of a local folder
    vae_factor: int  # spatial compression (8)
    time_factor: int  # temporal compression (4)
    patch: tuple[int, int, int]  # transformer patch (frames, rows, cols)
    latent_channels: int
    flow_shift: float
    train_steps: int
    variant: str | None = None  # weight files' variant infix (``fp16``…), None: plain files
    files: Source | None = None  # the listing the weights are fetched from


def inspect_wan(
    source: str,
    *,
    offline: bool = False,
    revision: str | None = None,
    variant: str | None = None,
) -> WanInfo:
    """Resolve and check a Wan 2.1 pipeline; reads only JSON (BadInput for every refusal).

    A hub id is pinned to ``revision`` (a branch, tag or commit; the default branch when
    None) and only the configs of :data:`WAN_COMPONENTS` are fetched here; each weighted
    component must hold safetensors in ``variant`` (the plain files when None), checked
    against the repository's listing before anything large is downloaded.
    """
    found = locate_source(source, offline=offline, revision=revision, components=WAN_COMPONENTS)
    folder = found.folder
    _read_json(folder / "model_index.json", f"model {source}")
    for name in WAN_COMPONENTS:
        if not (folder / name).is_dir():
            raise BadInput(f"model {source} has no {name}/ (not a Wan pipeline)")
    variant = choose_variant(found, None, variant, prefer_fp16=False)
    for name in WAN_WEIGHTED:
        check_weights(found, name, variant, f"model {source}")
    transformer = _read_json(folder / "transformer" / "config.json", f"model {source}")
    vae = _read_json(folder / "vae" / "config.json", f"model {source}")
    scheduler = _read_json(folder / "scheduler" / "scheduler_config.json", f"model {source}")
    downsample = vae.get("temperal_downsample", [False, True, True])
    # diffusers ships Wan with UniPC (``flow_shift``) or flow-match Euler (``shift``);
    # either way the sampler takes flow-match Euler steps with that shift.
    shift = scheduler.get("shift", scheduler.get("flow_shift", 3.0))
    return WanInfo(
        folder=folder,
        source=source,
        revision=found.revision,
        vae_factor=2 ** len(downsample),
        time_factor=2 ** sum(bool(d) for d in downsample),
        patch=tuple(int(p) for p in transformer.get("patch_size", (1, 2, 2))),
        latent_channels=int(vae.get("z_dim", 16)),
        flow_shift=float(shift),
        train_steps=int(scheduler.get("num_train_timesteps", 1000)),
        variant=variant,
        files=found,
    )


def native_window(
    info: WanInfo,
    latent_size: tuple[int, int, int],
    *,
    frames: int | None = None,
    size: tuple[int, int] | None = None,
) -> tuple[int, int, int]:
    """The window (latent frames, rows, cols) of one model call.

    Wan's training clip (81 frames, 480×832) unless ``frames`` / ``size`` (height,
    width in pixels) override it; a window never exceeds the ring latent (F, H, W), so a
    small panorama is denoised in one window along that axis (frames and columns wrap).
    """
    fw = frames if frames is not None else WAN_TRAIN_FRAMES
    h, w = size if size is not None else (WAN_TRAIN_HEIGHT, WAN_TRAIN_WIDTH)
    align = info.patch[1]
    F, H, W = latent_size
    rows = max(align, h // info.vae_factor // align * align)
    cols = max(align, w // info.vae_factor // align * align)
    return (min(F, math.ceil(fw / info.time_factor)), min(H, rows), min(W, cols))


# --------------------------------------------------------------------------- LoRA


@dataclass(frozen=True)
class LoraSpec:
    """One ``--lora ID_OR_FILE[:SCALE]``: a hub id, a folder or a .safetensors file."""

    source: str
    scale: float = 1.0


def parse_lora(text: str) -> LoraSpec:
    """``"owner/name:0.8"`` → LoraSpec("owner/name", 0.8); BadInput naming a bad scale.

    The scale is the part after the last ``:`` when it reads as a number (so a Windows
    drive letter is not taken for one); a NaN or infinite scale is refused.
    """
    source, scale = text, 1.0
    head, sep, tail = text.rpartition(":")
    if sep and head and not tail.startswith(("\\", "/")):
        try:
            scale = float(tail)
        except ValueError:
            raise BadInput(f"--lora {text}: scale {tail!r} is not a number") from None
        source = head
    if not math.isfinite(scale):
        raise BadInput(f"--lora {text}: scale must be a finite number, got {scale}")
    if not source:
        raise BadInput(f"--lora {text!r} names no LoRA")
    return LoraSpec(source, scale)


@dataclass
class LoraInfo:
    """A checked LoRA: its file, its weights in diffusers' Wan layout, and where it came from."""

    spec: LoraSpec
    file: Path
    revision: str  # hub commit, or "" for a local file
    sha256: str
    state_dict: dict

    def describe(self) -> dict[str, Any]:
        described = {"source": self.spec.source, "file": self.file.name, "scale": self.spec.scale}
        described["sha256"] = self.sha256
        if self.revision:
            described["revision"] = self.revision
        return described


def inspect_lora(spec: LoraSpec, info: WanInfo, *, offline: bool = False) -> LoraInfo:
    """Find, read and check a LoRA against the base before any model loads.

    Safetensors only (a pickle file is refused, never opened); the weights are
    converted to diffusers' Wan layout (diffusers reads the original and musubi
    layouts too) and every low-rank pair must fit a linear layer of the base
    transformer — a LoRA made for another base is refused naming a layer.
    """
    file, revision = _lora_file(spec.source, offline=offline)
    from diffusers import WanPipeline
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        raw = load_file(file)
    except (SafetensorError, OSError) as exc:
        raise BadInput(f"LoRA {spec.source}: {file.name} is not a readable safetensors file "
                       f"({str(exc).splitlines()[0]})") from None  # fmt: skip
    try:
        state = WanPipeline.lora_state_dict(raw)
    except (KeyError, ValueError, IndexError) as exc:
        raise BadInput(f"LoRA {spec.source} is not a Wan LoRA diffusers can read: {exc}") from None
    check_lora_fits(spec.source, state, base_linear_shapes(info))
    return LoraInfo(spec, file, revision, _sha256(file), state)


def _lora_file(source: str, *, offline: bool) -> tuple[Path, str]:
    """A LoRA source → (its one .safetensors file, hub revision or "")."""
    path = Path(source).expanduser()
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise BadInput(
            f"LoRA {source} is a pickle file; PanoLoop loads safetensors only",
            fix="convert it to .safetensors",
        )
    if path.is_file():
        if path.suffix.lower() != ".safetensors":
            raise BadInput(f"LoRA {source} is not a .safetensors file")
        return path, ""
    folder, revision = resolve_source(source, offline=offline, kind="LoRA")
    files = sorted(folder.rglob("*.safetensors"))
    if not files:
        pickles = sorted(p.name for p in folder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise BadInput(
                f"LoRA {source} has only pickle weights ({pickles[0]}); "
                "PanoLoop loads safetensors only"
            )
        raise BadInput(f"LoRA {source} holds no .safetensors file")
    if len(files) > 1:
        names = ", ".join(str(p.relative_to(folder)) for p in files[:4])
        raise BadInput(f"LoRA {source} holds several .safetensors files ({names}); name one file")
    return files[0], revision if not path.is_dir() else ""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def base_linear_shapes(info: WanInfo) -> dict[str, tuple[int, ...]]:
    """Every weight's shape in the base transformer, read from safetensors headers only
    (on disk, or by ranged requests to the hub before its weights are downloaded)."""
    if info.files is None:
        return {}
    shapes = weight_shapes(info.files, "transformer", info.variant)
    return {name: shape for name, (_, shape) in shapes.items()}


def check_lora_fits(source: str, state: dict, base: dict[str, tuple[int, ...]]) -> None:
    """Every ``transformer.<layer>.lora_A/B.weight`` must fit ``<layer>.weight`` of the base:
    A is (rank, in_features), B is (out_features, rank). BadInput names the first misfit."""
    if not base:
        return  # the base's headers cannot be read (hub unreachable): loading will tell
    fitted = 0
    for key, tensor in state.items():
        if not key.startswith("transformer.") or ".lora_" not in key:
            continue
        layer, _, which = key.removeprefix("transformer.").rpartition(".lora_")
        target = base.get(f"{layer}.weight")
        if target is None or len(target) != 2:
            raise BadInput(
                f"LoRA {source} was made for another base: the Wan transformer has no "
                f"linear layer {layer}"
            )
        shape = tuple(tensor.shape)
        ok = shape[1] == target[1] if which.startswith("A") else shape[0] == target[0]
        if len(shape) != 2 or not ok:
            raise BadInput(
                f"LoRA {source} was made for another base: {key} has shape {list(shape)}, "
                f"the layer's weight is {list(target)}"
            )
        fitted += 1
    if not fitted:
        raise BadInput(f"LoRA {source} holds no weights for the Wan transformer")


# --------------------------------------------------------------------------- backend


@dataclass
class WanEmbeds:
    """UMT5 states for the prompt and (with guidance) the negative prompt."""

    cond: Any
    uncond: Any | None
    tokens: int = 0
    negative_tokens: int = 0

    def describe(self) -> dict[str, int]:
        """The manifest's prompt fields (Wan reads at most ``WAN_TEXT_TOKENS`` tokens)."""
        return {
            "prompt_tokens": self.tokens,
            "negative_prompt_tokens": self.negative_tokens,
            "prompt_tokens_read": min(self.tokens, WAN_TEXT_TOKENS),
        }


class WanBackend:
    """Wan 2.1 text-to-video behind :class:`.backends.Backend`, flow-matching steps.

    Latents are (16, F, H, W) in Wan's normalised latent space; one latent frame stands
    for ``time_factor`` (4) output frames.
    """

    def __init__(
        self, pipe: Any, info: WanInfo, *, window: tuple[int, int, int], device: str
    ) -> None:
        import torch
        from diffusers import FlowMatchEulerDiscreteScheduler

        self.pipe = pipe
        self.info = info
        self.device = torch.device(device)
        self.dtype = pipe.transformer.dtype
        self.latent_channels = info.latent_channels
        self.vae_factor = info.vae_factor
        self.time_factor = info.time_factor
        self.align = info.patch[1]
        self.window = window
        self.model_fps = WAN_MODEL_FPS
        self.scheduler = FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=info.train_steps, shift=info.flow_shift
        )
        self.step_rule = FlowMatchRule(info.train_steps)
        self.loras: list[LoraInfo] = []
        self.offloaded = False
        vae = pipe.vae.config
        self._mean = torch.tensor(vae.latents_mean, dtype=torch.float32).view(-1, 1, 1, 1)
        self._std = torch.tensor(vae.latents_std, dtype=torch.float32).view(-1, 1, 1, 1)

    def timesteps(self, steps: int) -> list[float]:
        """The shifted flow-match timesteps (σ · 1000, first ≈ 1000)."""
        self.scheduler.set_timesteps(steps)
        return [float(t) for t in self.scheduler.timesteps]

    def encode_prompt(self, prompt: str, negative: str, guidance: float) -> WanEmbeds:
        import torch

        with torch.inference_mode():
            cond, uncond = self.pipe.encode_prompt(
                prompt=prompt,
                negative_prompt=negative,
                do_classifier_free_guidance=guidance > 1.0,
                num_videos_per_prompt=1,
                max_sequence_length=WAN_TEXT_TOKENS,
                device=self.device,
                dtype=self.dtype,
            )
        count = len(self.pipe.tokenizer(prompt).input_ids)
        negative_count = len(self.pipe.tokenizer(negative).input_ids) if guidance > 1.0 else 0
        return WanEmbeds(cond, uncond if guidance > 1.0 else None, count, negative_count)

    def predict_noise(self, latents: Any, timestep: float, prompt: WanEmbeds, guidance: float):
        """The velocity v̂ = ε − x₀ for a window (C, F, h, w), with classifier-free guidance."""
        import torch

        sample = latents.unsqueeze(0).to(self.device, self.dtype)
        states = prompt.cond
        if prompt.uncond is not None:
            sample = torch.cat([sample, sample])
            states = torch.cat([prompt.uncond, prompt.cond])
        t = torch.full((sample.shape[0],), timestep, device=self.device, dtype=torch.float32)
        with torch.inference_mode():
            out = self.pipe.transformer(
                hidden_states=sample, timestep=t, encoder_hidden_states=states, return_dict=False
            )[0].float()
        if prompt.uncond is not None:
            uncond, cond = out.chunk(2)
            out = uncond + guidance * (cond - uncond)
        return out[0].to(latents.device)

    # ----------------------------------------------------------------------- encode

    def encode_still(self, image: Any, frames: int) -> Any:
        """A still (H, W, 3) float RGB in [0, 1] → its clean normalised latent
        (C, frames, H/8, W/8), the same for every latent frame of the ring.

        The causal VAE gives its first latent frame to one picture, and its cached
        temporal context makes the next latent frames of a still settle only gradually
        (on the tiny test VAE the change between successive latent frames falls from 0.24
        to 0.04 over 8 groups), so a constant clip of 1 + 4·``ENCODE_STILL_LATENT_FRAMES``
        frames is encoded and its last latent frame (a 4-frame group deep in the still
        clip, like every frame of the ring) is repeated. Columns are padded with wrapped
        pixels and cropped, as for decoding; the posterior's mean is used (the seeded
        generator stays the sampler's alone).
        """
        import torch

        from .backends import still_pixels

        pixels, pad = still_pixels(image, self.vae_factor)
        count = 1 + self.time_factor * ENCODE_STILL_LATENT_FRAMES
        clip = pixels.unsqueeze(1).expand(-1, count, -1, -1)
        vae = self.pipe.vae
        with torch.inference_mode():
            sample = clip.unsqueeze(0).to(_module_device(vae, self.device), vae.dtype)
            mean = vae.encode(sample).latent_dist.mean[0, :, -1:].float().cpu()
        mean = mean[..., pad : mean.shape[-1] - pad]
        latent = (mean - self._mean) / self._std
        return latent.repeat(1, frames, 1, 1)

    # ----------------------------------------------------------------------- decode

    def decode_clip(self, latent: Any) -> Any:
        """Wan's own causal decode of latent frames (C, n, h, W) → float pixels
        (3, 1 + 4(n−1), h·8, W·8) in [−1, 1], columns padded with wrapped latent columns
        and cropped (the first latent frame gives one picture, as in training)."""
        import torch

        pad = min(DECODE_PAD, latent.shape[-1])
        padded = torch.cat([latent[..., -pad:], latent, latent[..., :pad]], dim=-1).float()
        z = padded * self._std.to(padded.device) + self._mean.to(padded.device)
        vae = self.pipe.vae
        with torch.inference_mode():
            z = z.unsqueeze(0).to(_module_device(vae, self.device), vae.dtype)
            video = vae.decode(z, return_dict=False)[0][0].float()
        crop = pad * self.vae_factor
        return video[..., crop : video.shape[-1] - crop]

    def decode_video(
        self, latent: Any, ctx: Any, *, warmup: int = DECODE_WARMUP, chunk: int = DECODE_CHUNK
    ) -> list[np.ndarray]:
        """The ring latent (C, L, H, W) → 4·L uint8 frames (H·8, W·8, 3) that loop.

        Chunk by chunk (:func:`decode_chunks`), each decoded by :meth:`decode_chunk`
        with the ``warmup`` latent frames that precede it on the ring.
        """
        check_finite_latent(latent)
        count = latent.shape[1]
        frames: list[np.ndarray] = []
        for start, stop in decode_chunks(count, chunk):
            ctx.step("decode", start, count)
            ctx.cancel.check()
            frames.extend(self.decode_chunk(latent, start, stop, warmup=warmup))
        ctx.step("decode", count, count)
        return frames

    def decode_chunk(
        self, latent: Any, start: int, stop: int, *, warmup: int = DECODE_WARMUP
    ) -> list[np.ndarray]:
        """Latent frames ``start``…``stop − 1`` of the ring (C, L, H, W) → their
        4·(stop − start) uint8 frames. The causal decoder first reads the ``warmup``
        latent frames that precede the chunk on the ring (modulo L); the
        1 + 4·(warmup − 1) frames they decode to are dropped. Chunks are independent
        (the decoder's cache starts empty each call), so they may run anywhere."""
        import torch

        index = torch.tensor(chunk_context(latent.shape[1], start, stop, warmup))
        video = self.decode_clip(latent[:, index.to(latent.device)])
        drop = 1 + self.time_factor * (warmup - 1) if warmup else 0
        return to_uint8(video[:, drop:])

    def decode_frame(self, latent: Any) -> np.ndarray:
        """One latent frame alone (C, h, W) → its first picture (the Backend interface;
        a Wan ring decodes with :meth:`decode_video`)."""
        return to_uint8(self.decode_clip(latent[:, None]))[0]

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "wan",
            "model_family": "wan2.1",
            "model": self.info.source,
            "revision": self.info.revision,
            "variant": self.info.variant,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "window": list(self.window),
            "vae_factor": self.vae_factor,
            "time_factor": self.time_factor,
            "step_rule": self.step_rule.describe(),
            "flow_shift": self.info.flow_shift,
            "decode_warmup_latent_frames": DECODE_WARMUP,
            "cpu_offload": self.offloaded,
            "loras": [lora.describe() for lora in self.loras],
        }


def decode_chunks(count: int, chunk: int = DECODE_CHUNK) -> list[tuple[int, int]]:
    """The (start, stop) latent-frame spans a ring of ``count`` latent frames decodes in."""
    return [(start, min(count, start + chunk)) for start in range(0, count, chunk)]


def chunk_context(count: int, start: int, stop: int, warmup: int = DECODE_WARMUP) -> list[int]:
    """The latent frames, in order, that decoding the chunk ``start``…``stop − 1`` of a
    ring of ``count`` reads: the ``warmup`` before it on the ring (modulo ``count``), then
    the chunk. Decoding just these, as a ring of their own, gives the same frames."""
    return [k % count for k in range(start - warmup, stop)]


def check_finite_latent(latent: Any) -> None:
    """PanoLoopError (one line, what to try) when the sampled latent is not finite."""
    import torch

    if not bool(torch.isfinite(latent).all()):
        raise PanoLoopError(
            "the sampled latent holds NaN or infinite values",
            fix="try --dtype float32 (or bfloat16 on CUDA); float16 can overflow in Wan",
        )


def to_uint8(video: Any) -> list[np.ndarray]:
    """Pixels (3, n, h, w) in [−1, 1] → n uint8 RGB frames (h, w, 3)."""
    import torch

    pixels = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return list(pixels.permute(1, 2, 3, 0).cpu().numpy())


def _module_device(module: Any, fallback: Any) -> Any:
    """Where a (possibly offloaded) module runs: its hook's execution device, else its weights'."""
    hook = getattr(module, "_hf_hook", None)
    device = getattr(hook, "execution_device", None)
    if device is not None:
        return device
    return next(module.parameters()).device if any(True for _ in module.parameters()) else fallback


# --------------------------------------------------------------------------- loading


def pick_wan_dtype(dtype: str, device: str) -> Any:
    """``auto`` → bfloat16 on CUDA (Wan's own precision), float16 on MPS, float32 on the CPU."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16
        return torch.float16 if device == "mps" else torch.float32
    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]


def load_wan(
    info: WanInfo,
    *,
    window: tuple[int, int, int],
    device: str = "auto",
    dtype: str = "auto",
    loras: tuple[LoraInfo, ...] = (),
    offline: bool = False,
    cpu_offload: bool = False,
    vae_tiling: bool = False,
) -> WanBackend:
    """Load a checked Wan pipeline (safetensors only) with its LoRAs onto ``device``.

    The VAE stays in float32 (Wan's decoder is run in full precision by its authors);
    the text encoder and transformer take ``dtype``. LoRAs load through diffusers'
    LoRA loading (peft) as adapters with their scales.
    """
    del offline  # resolved folders only: nothing here reaches the hub
    import torch
    from diffusers import AutoencoderKLWan, WanPipeline

    device = pick_device(device)
    torch_dtype = pick_wan_dtype(dtype, device)
    folder = info.folder
    if info.files is not None:  # a hub id's weights, in the chosen variant, arrive now
        folder = fetch_weights(info.files, WAN_COMPONENTS, info.variant)
    weights = {"use_safetensors": True, "variant": info.variant}
    try:
        vae = AutoencoderKLWan.from_pretrained(
            folder, subfolder="vae", dtype=torch.float32, **weights
        )
        pipe = WanPipeline.from_pretrained(folder, vae=vae, dtype=torch_dtype, **weights)
    except (OSError, ValueError, TypeError) as exc:
        raise PanoLoopError(
            f"could not load model {info.source}: {str(exc).splitlines()[0]}",
            fix="check that the folder is a complete Wan 2.1 pipeline",
        ) from None
    pipe.set_progress_bar_config(disable=True)
    names = []
    for i, lora in enumerate(loras):
        name = f"lora{i}"
        try:
            pipe.load_lora_weights(dict(lora.state_dict), adapter_name=name)
        except (ValueError, RuntimeError, KeyError) as exc:
            raise BadInput(
                f"LoRA {lora.spec.source} does not fit model {info.source}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        names.append(name)
    if names:
        pipe.set_adapters(names, adapter_weights=[lora.spec.scale for lora in loras])
    if vae_tiling:
        pipe.vae.enable_tiling()
    if cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    backend = WanBackend(pipe, info, window=window, device=device)
    backend.loras = list(loras)
    backend.offloaded = cpu_offload
    return backend
