"""Finding, checking and loading model weights, before and for a backend.

Loading checks before it loads: :func:`inspect_model` resolves a hub id or folder and
reads only JSON configs, so bad input (no ``model_index.json``, pickle-only weights,
offline and not cached) is refused before any weights are read. Weights load with
``use_safetensors=True``; remote code is never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInput, PanoLoopError
from .backends import ANIMATEDIFF_WINDOW_FRAMES, AnimateDiffBackend

#: Weight files PanoLoop refuses to load (pickle can run code).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# --------------------------------------------------------------------------- inspection


@dataclass(frozen=True)
class ModelInfo:
    """What the configs say, read before any weights load."""

    folder: Path
    source: str  # the hub id or folder the user named
    revision: str  # hub commit, or ``sha256:…`` fingerprint of a local folder
    vae_factor: int
    sample_size: int  # the UNet's native latent window (rows = cols)
    align: int  # the UNet's total downsampling
    max_frames: int  # longest clip the motion module's positions allow
    adapter: ModelInfo | None = field(default=None)


def resolve_source(source: str, *, offline: bool, kind: str = "model") -> tuple[Path, str]:
    """A local folder or hub id → (folder on disk, revision). Downloads only if online."""
    path = Path(source).expanduser()
    looks_local = path.is_absolute() or source.startswith((".", "~")) or path.exists()
    if looks_local or not HUB_ID.match(source):
        if not path.is_dir():
            raise BadInput(f"{kind} folder {source} does not exist")
        return path, "sha256:" + folder_fingerprint(path)
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - a broken environment
        raise PanoLoopError(f"huggingface_hub is missing: {exc}") from None
    try:
        folder = Path(
            snapshot_download(
                source,
                # Configs and safetensors only: never pickle weights, and never a
                # repository's single-file checkpoints at its root (pipelines keep
                # their weights in component folders; a motion adapter at its root).
                allow_patterns=["*.json", "*.txt", "*.model"]
                + (["*/*.safetensors"] if kind == "model" else ["*.safetensors"]),
                local_files_only=offline,
            )
        )
    except LocalEntryNotFoundError:
        raise BadInput(
            f"{kind} {source} is not in the local cache and offline mode is on",
            fix="go online once to download it, or pass a local folder",
        ) from None
    except Exception as exc:  # the hub's errors are many; name the id and the cause
        raise BadInput(f"{kind} {source} could not be fetched: {type(exc).__name__}") from None
    return folder, folder.name


def folder_fingerprint(folder: Path) -> str:
    """A quick content hash of a model folder: every file's path, size and first MiB."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(str(path.stat().st_size).encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{what}: {path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadInput(f"{what}: {path} is not valid JSON") from None


def check_safetensors(component: Path) -> None:
    """Refuse a model component whose weights exist only as pickle files."""
    files = [p.name for p in component.iterdir() if p.is_file()]
    if any(name.endswith(".safetensors") for name in files):
        return
    pickles = [name for name in files if name.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise BadInput(
            f"{component} has only pickle weights ({pickles[0]}); PanoLoop loads safetensors only",
            fix="convert the weights to .safetensors or use a model that ships them",
        )
    raise BadInput(f"{component} holds no .safetensors weights")


def inspect_model(
    source: str, *, motion_adapter: str | None = None, offline: bool = False
) -> ModelInfo:
    """Resolve and check an AnimateDiff pipeline (or SD 1.5 base + motion adapter).

    Reads only JSON; raises :class:`BadInput` naming the model for every refusal.
    """
    folder, revision = resolve_source(source, offline=offline)
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise BadInput(f"model {source} has no model_index.json (not a diffusers pipeline folder)")
    index = _read_json(index_path, f"model {source}")
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or entry[0] is None:
            continue
        component = folder / name
        if not component.is_dir():
            raise BadInput(f"model {source}: component folder {name}/ is missing")
        if (component / "config.json").is_file():
            check_safetensors(component)
    for needed in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if not (folder / needed).is_dir():
            raise BadInput(f"model {source} has no {needed}/ (not an AnimateDiff or SD pipeline)")
    unet = _read_json(folder / "unet" / "config.json", f"model {source}")
    vae = _read_json(folder / "vae" / "config.json", f"model {source}")
    adapter = None
    max_frames = unet.get("motion_max_seq_length")
    if motion_adapter:
        adapter_folder, adapter_rev = resolve_source(
            motion_adapter, offline=offline, kind="motion adapter"
        )
        config = _read_json(adapter_folder / "config.json", f"motion adapter {motion_adapter}")
        check_safetensors(adapter_folder)
        max_frames = config.get("motion_max_seq_length", 32)
        adapter = ModelInfo(adapter_folder, motion_adapter, adapter_rev, 0, 0, 0, max_frames)
    elif max_frames is None:
        if (folder / "motion_adapter" / "config.json").is_file():
            ma = _read_json(folder / "motion_adapter" / "config.json", f"model {source}")
            max_frames = ma.get("motion_max_seq_length", 32)
        else:
            raise BadInput(
                f"model {source} has no motion module; pass --motion-adapter to pair it with one"
            )
    return ModelInfo(
        folder=folder,
        source=source,
        revision=revision,
        vae_factor=2 ** (len(vae["block_out_channels"]) - 1),
        sample_size=int(unet["sample_size"]),
        align=2 ** (len(unet["block_out_channels"]) - 1),
        max_frames=int(max_frames),
        adapter=adapter,
    )


# --------------------------------------------------------------------------- devices


def pick_device(device: str) -> str:
    """``auto`` → cuda, then mps, then cpu; an explicit device must be available."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BadInput(
            f"device {device} requested but this torch has no CUDA",
            fix="install a CUDA build of torch, or choose device auto/cpu",
        )
    if device == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise BadInput(f"device {device} requested but MPS is not available")
    return device


def pick_dtype(dtype: str, device: str) -> Any:
    """``auto`` → float16 on a GPU, float32 on the CPU; else the named dtype."""
    import torch

    if dtype == "auto":
        return torch.float32 if device == "cpu" else torch.float16
    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]


# --------------------------------------------------------------------------- loading


def load_animatediff(
    info: ModelInfo,
    *,
    device: str = "auto",
    dtype: str = "auto",
    window_frames: int = ANIMATEDIFF_WINDOW_FRAMES,
    offline: bool = False,
    cpu_offload: bool = False,
    vae_slicing: bool = False,
    vae_tiling: bool = False,
) -> AnimateDiffBackend:
    """Load the pipeline ``inspect_model`` checked, safetensors only, on the chosen device.

    ``vae_tiling`` decodes each frame in overlapping blended tiles (the VAE's own
    tiling), so decoding memory stops growing with the panorama; the wrapped columns
    of :meth:`AnimateDiffBackend.decode_frame` keep the 360° seam inside the image.
    ``vae_slicing`` is the VAE's batch slicing: frames are decoded one at a time
    already, so it changes nothing for this backend (kept for other backends).
    """
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
    from diffusers import AnimateDiffPipeline, MotionAdapter

    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    kwargs: dict[str, Any] = {"use_safetensors": True, "dtype": torch_dtype}
    if info.adapter is not None:
        kwargs["motion_adapter"] = MotionAdapter.from_pretrained(
            info.adapter.folder, use_safetensors=True, dtype=torch_dtype
        )
    try:
        pipe = AnimateDiffPipeline.from_pretrained(info.folder, **kwargs)
    except (OSError, ValueError, TypeError) as exc:
        raise PanoLoopError(
            f"could not load model {info.source}: {str(exc).splitlines()[0]}",
            fix="check that the folder is a complete AnimateDiff pipeline",
        ) from None
    pipe.set_progress_bar_config(disable=True)
    if vae_slicing:
        # diffusers 0.42 dropped the pipeline-level switch; the VAE keeps its own.
        pipe.vae.enable_slicing()
    if vae_tiling:
        pipe.vae.enable_tiling()
    if cpu_offload:
        # Each model waits on the CPU and moves to ``device`` when it runs (accelerate
        # hooks). On a CPU-only machine the hooks have nowhere to move it: harmless.
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    backend = AnimateDiffBackend(pipe, info, window_frames=window_frames, device=device)
    backend.offloaded = cpu_offload
    return backend
