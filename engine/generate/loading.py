"""Finding, checking and loading model weights, before and for a backend.

Loading checks before it loads. :func:`inspect_model` resolves a hub id (at a pinned
``revision`` if asked) or a folder, and reads only the file listing and the JSON configs
of the components the AnimateDiff pipeline uses — ``unet``, ``vae``, ``text_encoder``,
``tokenizer``, ``scheduler`` (never ``safety_checker``, ``feature_extractor`` or
``image_encoder``) — plus the motion adapter's. Every config is untrusted input: a bad
shape, a custom-code class, an SDXL model, missing or pickle-only weights, a missing
``--variant``, a revision not in the cache while offline are all refused (:class:`BadInput`,
one line naming the value) before any weights are read or downloaded. Then
:func:`load_animatediff` downloads only the weight files of those components in one
variant (hub ids) and builds each component from its known class, safetensors only;
remote code is never trusted.

Hub repositories are fetched with ``huggingface_hub.snapshot_download`` and
``allow_patterns`` built by :func:`hub_files` from the repository's listing, so a
repository's root single-file checkpoints, pickle files, other variants and unused
components are never downloaded.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInput, PanoLoopError
from .backends import ANIMATEDIFF_WINDOW_FRAMES, AnimateDiffBackend

#: Weight files PanoLoop refuses to load (pickle can run code).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: The components an AnimateDiff pipeline loads, and which of them carry weights.
PIPELINE_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
WEIGHTED_COMPONENTS = ("unet", "vae", "text_encoder")
#: The classes each component may name in ``model_index.json`` (library, class); any
#: other entry is custom code or a model this backend cannot run, and is refused.
KNOWN_CLASSES = {
    "unet": {("diffusers", "UNet2DConditionModel"), ("diffusers", "UNetMotionModel")},
    "vae": {("diffusers", "AutoencoderKL")},
    "text_encoder": {("transformers", "CLIPTextModel")},
    "tokenizer": {("transformers", "CLIPTokenizer"), ("transformers", "CLIPTokenizerFast")},
    "scheduler": {
        ("diffusers", name)
        for name in (
            "DDIMScheduler",
            "DDPMScheduler",
            "PNDMScheduler",
            "LMSDiscreteScheduler",
            "EulerDiscreteScheduler",
            "EulerAncestralDiscreteScheduler",
            "DPMSolverMultistepScheduler",
            "DPMSolverSinglestepScheduler",
            "UniPCMultistepScheduler",
            "HeunDiscreteScheduler",
            "KDPM2DiscreteScheduler",
            "KDPM2AncestralDiscreteScheduler",
            "LCMScheduler",
        )
    },
}
#: Motion adapters for SDXL have three UNet blocks (guoyww/animatediff-motion-adapter-sdxl-beta).
SDXL_ADAPTER_BLOCKS = [320, 640, 1280]
#: An SDXL UNet's text width (two concatenated text encoders).
SDXL_CROSS_ATTENTION_DIM = 2048
DEVICE_NAME = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
#: ``model.fp16.safetensors``, ``diffusion_pytorch_model.fp16-00001-of-00002.safetensors``…
WEIGHT_NAME = re.compile(r"^[^./]+?(?:\.(?P<variant>[^./]+?))?(?:-\d{5}-of-\d{5})?\.safetensors$")
#: ``diffusion_pytorch_model.safetensors.index.json`` or ``….index.fp16.json`` (sharded weights).
INDEX_NAME = re.compile(r"^[^./]+\.safetensors\.index(?:\.(?P<variant>[^./]+))?\.json$")
#: Small text files a component may need besides weights (configs, tokenizer vocabularies).
CONFIG_SUFFIXES = (".json", ".txt", ".model")


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    """Where one model's files are: a local folder, or a hub repository at one commit.

    ``files`` are the repository-relative paths (``/``-separated) the source holds: a
    local folder's files, a hub repository's listing (online) or a cached snapshot's
    files (offline). ``folder`` holds at least the configs.
    """

    name: str  # what the user typed
    folder: Path
    revision: str  # hub commit, or ``sha256:…`` fingerprint of a local folder
    files: tuple[str, ...]
    repo_id: str | None = None  # None for a local folder
    cached: bool = False  # a hub snapshot already in the cache: nothing to download


def is_hub_id(source: str) -> bool:
    """True for ``org/name`` that does not name an existing local path."""
    path = Path(source).expanduser()
    looks_local = path.is_absolute() or source.startswith((".", "~")) or path.exists()
    return not looks_local and bool(HUB_ID.match(source))


def local_files(folder: Path) -> tuple[str, ...]:
    """Every file under ``folder`` as a sorted ``/``-separated relative path."""
    return tuple(sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()))


def locate_source(
    source: str,
    *,
    offline: bool,
    kind: str = "model",
    revision: str | None = None,
    components: tuple[str, ...] = PIPELINE_COMPONENTS,
) -> Source:
    """A local folder or hub id → :class:`Source`; for a hub id fetch only the configs.

    ``components`` are the folders whose configs are fetched (``""``: the repository
    root, as for a motion adapter). Offline, the hub cache must already hold the
    revision (the default branch when ``revision`` is None).
    """
    if not is_hub_id(source):
        if revision is not None:
            raise BadInput(
                f"--revision {revision} applies to hub ids, but {kind} {source} is a folder"
            )
        path = Path(source).expanduser()
        if not path.is_dir():
            raise BadInput(f"{kind} folder {source} does not exist")
        return Source(source, path, "sha256:" + folder_fingerprint(path), local_files(path))
    from huggingface_hub import snapshot_download

    commit, files = _hub_listing(source, revision, offline=offline, kind=kind)
    if files is None:  # offline: the cached snapshot is the listing
        folder = Path(_cached_snapshot(source, revision, kind=kind, offline=offline))
        return Source(source, folder, folder.name, local_files(folder), source, cached=True)
    wanted = hub_files(files, components, variant=None, weights=False)
    try:
        folder = Path(snapshot_download(source, revision=commit, allow_patterns=wanted))
    except Exception as exc:  # the hub's errors are many; name the id and the cause
        raise BadInput(f"{kind} {source} could not be fetched: {type(exc).__name__}") from None
    return Source(source, folder, commit, tuple(sorted(files)), source)


def _hub_listing(
    repo_id: str, revision: str | None, *, offline: bool, kind: str
) -> tuple[str, list[str] | None]:
    """(commit, file listing) from the hub; (``""``, None) when the cache must serve
    (offline, or the hub cannot be reached — as diffusers falls back to its cache)."""
    if offline:
        return "", None
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi().model_info(repo_id, revision=revision)
    except RevisionNotFoundError:
        raise BadInput(f"{kind} {repo_id} has no revision {revision}") from None
    except RepositoryNotFoundError:
        raise BadInput(
            f"{kind} {repo_id} was not found on the hub (or is gated or private)",
            fix="check the id, or log in with `hf auth login` for a gated model",
        ) from None
    except Exception:  # no connection or a failing hub: the cache may still serve
        return "", None
    return str(info.sha), [s.rfilename for s in info.siblings or ()]


def _cached_snapshot(repo_id: str, revision: str | None, *, kind: str, offline: bool) -> str:
    """The cached snapshot folder of ``repo_id`` at ``revision`` (a branch, tag or commit)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(repo_id, revision=revision, local_files_only=True)
    except LocalEntryNotFoundError:
        what = f"{kind} {repo_id}" + (f" at revision {revision}" if revision else "")
        why = "offline mode is on" if offline else "the hub cannot be reached"
        raise BadInput(
            f"{what} is not in the local hub cache and {why}",
            fix="go online once to download it, or pass a local folder",
        ) from None


def resolve_source(source: str, *, offline: bool, kind: str = "LoRA") -> tuple[Path, str]:
    """A whole small repository (a LoRA) → (folder on disk, revision): its configs and
    every safetensors file, never pickles. Pipelines use :func:`locate_source`, which
    fetches only the components and the variant they load."""
    if not is_hub_id(source):
        path = Path(source).expanduser()
        if not path.is_dir():
            raise BadInput(f"{kind} folder {source} does not exist")
        return path, "sha256:" + folder_fingerprint(path)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(
            snapshot_download(
                source,
                allow_patterns=["*.json", "*.txt", "*.model", "*.safetensors"],
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


# --------------------------------------------------------------------------- file selection


def files_in(files: tuple[str, ...] | list[str], component: str) -> list[str]:
    """Names of the files directly inside ``component`` (``""``: the root)."""
    prefix = f"{component}/" if component else ""
    names = [f[len(prefix) :] for f in files if f.startswith(prefix)]
    return sorted(name for name in names if "/" not in name)


def weight_files(
    files: tuple[str, ...] | list[str], component: str, variant: str | None
) -> list[str]:
    """Relative paths of ``component``'s safetensors weights in ``variant`` (None: the
    plain files, no variant infix), with their shard index when sharded."""
    prefix = f"{component}/" if component else ""
    chosen = []
    for name in files_in(files, component):
        match = WEIGHT_NAME.match(name) or INDEX_NAME.match(name)
        if match and match.group("variant") == variant:
            chosen.append(prefix + name)
    return chosen


def hub_files(
    files: list[str] | tuple[str, ...],
    components: tuple[str, ...],
    variant: str | None,
    *,
    weights: bool = True,
) -> list[str]:
    """Exact paths to download (``allow_patterns``) from a hub repository's listing.

    ``model_index.json``, the small config files of ``components`` (``""`` is the
    repository root: a motion adapter's config and weights sit there) and, with
    ``weights``, their safetensors in ``variant`` — never pickle files, other variants,
    unused components or root-level single-file checkpoints of a pipeline repository.
    """
    chosen = [f for f in ("model_index.json",) if f in files]
    for component in components:
        prefix = f"{component}/" if component else ""
        chosen += [prefix + n for n in files_in(files, component) if n.endswith(CONFIG_SUFFIXES)]
        if weights:
            chosen += weight_files(files, component, variant)
    return sorted(set(chosen))


def check_weights(source: Source, component: str, variant: str | None, what: str) -> None:
    """Refuse a component with no safetensors weights in ``variant`` (naming what it has)."""
    if weight_files(source.files, component, variant):
        return
    names = files_in(source.files, component)
    place = f"{component}/" if component else "its root"
    if variant is not None:
        raise BadInput(
            f"{what} has no {variant} safetensors weights in {place} (--variant {variant})",
            fix="drop --variant to load the full-precision files",
        )
    pickles = [n for n in names if n.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise BadInput(
            f"{what} has only pickle weights in {place} ({pickles[0]}); "
            "PanoLoop loads safetensors only",
            fix="convert the weights to .safetensors or use a model that ships them",
        )
    raise BadInput(f"{what} holds no .safetensors weights in {place}")


def has_variant(source: Source, components: tuple[str, ...], variant: str) -> bool:
    """True when every component in ``components`` has weights in ``variant``."""
    return all(weight_files(source.files, c, variant) for c in components)


# --------------------------------------------------------------------------- weight headers

#: Longest safetensors header read (bytes); a larger one is not a weight file we trust.
MAX_HEADER = 100 << 20


def read_safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name → (dtype, shape) from a safetensors file's JSON header (its first
    bytes: an 8-byte little-endian length, then the JSON); no tensor data is read.
    ``{}`` for a file that cannot be read as safetensors."""
    try:
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 0 < length <= MAX_HEADER:
                return {}
            header = json.loads(handle.read(length))
        return {
            name: (str(entry["dtype"]), tuple(int(n) for n in entry["shape"]))
            for name, entry in header.items()
            if name != "__metadata__"
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def weight_shapes(
    source: Source, component: str, variant: str | None
) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every tensor of ``component``'s safetensors weights in ``variant`` (shards
    together): name → (dtype, shape), from the files' headers only.

    Files on disk (a local folder, a cached snapshot, weights already fetched) are read
    locally; a hub repository whose weights are not downloaded yet answers each file's
    header with a ranged request (``HfApi.parse_safetensors_file_metadata``: a few KiB,
    never the weights). ``{}`` when the hub cannot be asked (offline, no connection):
    callers treat the shapes as unknown, never as a refusal.
    """
    files = weight_files(source.files, component, variant)
    names = [name for name in files if name.endswith(".safetensors")]
    shapes: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name in names:
        local = source.folder / name
        if local.is_file():
            shapes.update(read_safetensors_header(local))
        elif source.repo_id is not None:
            shapes.update(_hub_header(source, name))
    return shapes


def _hub_header(source: Source, name: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """A hub file's safetensors header by ranged request; ``{}`` when it cannot be had."""
    from huggingface_hub import HfApi

    try:
        meta = HfApi().parse_safetensors_file_metadata(
            source.repo_id, name, revision=source.revision or None
        )
    except Exception:  # offline, no connection, a failing hub: the shapes stay unknown
        return {}
    return {key: (info.dtype, tuple(info.shape)) for key, info in meta.tensors.items()}


def parameter_count(shapes: dict[str, tuple[str, tuple[int, ...]]]) -> int:
    """The number of parameters the tensors hold."""
    return sum(math.prod(shape) for _, shape in shapes.values())


def header_params(
    source: Source, components: tuple[str, ...], variant: str | None
) -> dict[str, int]:
    """Parameters per component in ``variant``, from weight headers (0: unknown), so a
    memory estimate counts a hub model's weights before they are downloaded."""
    return {name: parameter_count(weight_shapes(source, name, variant)) for name in components}


# --------------------------------------------------------------------------- configs


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{what}: {path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadInput(f"{what}: {path} is not valid JSON") from None


def _read_config(path: Path, what: str) -> dict:
    config = _read_json(path, what)
    if not isinstance(config, dict):
        raise BadInput(f"{what}: {path.name} must hold a JSON object, got {type(config).__name__}")
    return config


def positive_int(config: dict, key: str, where: str, default: int | None = None) -> int:
    """``config[key]`` as a whole number ≥ 1 (booleans and strings refused)."""
    value = config.get(key, default)
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value < 1:
        raise BadInput(f"{where}: {key} must be a whole number ≥ 1, got {value!r}")
    return int(value)


def positive_ints(config: dict, key: str, where: str) -> list[int]:
    """``config[key]`` as a non-empty list of whole numbers ≥ 1."""
    value = config.get(key)
    if not isinstance(value, list) or not value:
        raise BadInput(f"{where}: {key} must be a list of whole numbers, got {value!r}")
    return [positive_int({key: v}, key, where) for v in value]


def positive_number(config: dict, key: str, where: str, default: float) -> float:
    """``config[key]`` as a finite number > 0 (booleans and strings refused)."""
    value = config.get(key, default)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not (value > 0 and math.isfinite(value)):
        raise BadInput(f"{where}: {key} must be a positive number, got {value!r}")
    return float(value)


def read_index(source: Source) -> dict:
    """``model_index.json`` as a dict of component entries (refusing other shapes)."""
    if not (source.folder / "model_index.json").is_file():
        raise BadInput(
            f"model {source.name} has no model_index.json (not a diffusers pipeline folder)"
        )
    return _read_config(source.folder / "model_index.json", f"model {source.name}")


def refuse_sdxl_index(index: dict, name: str) -> None:
    """SDXL pipelines carry a second text encoder; name what was found."""
    for key in ("text_encoder_2", "tokenizer_2"):
        entry = index.get(key)
        if isinstance(entry, list) and entry and entry[0] is not None:
            raise BadInput(
                f"model {name} is an SDXL pipeline ({key} in model_index.json); "
                "PanoLoop's AnimateDiff runs Stable Diffusion 1.5 bases",
                fix="choose an SD 1.5 base (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5)",
            )


def component_class(index: dict, component: str, name: str) -> str:
    """The class ``model_index.json`` names for ``component``; refuses unknown or custom code."""
    entry = index.get(component)
    if entry is None:
        raise BadInput(f"model {name} has no {component} (not an AnimateDiff or SD pipeline)")
    valid = isinstance(entry, list) and len(entry) == 2 and all(isinstance(e, str) for e in entry)
    if not valid or tuple(entry) not in KNOWN_CLASSES[component]:
        raise BadInput(
            f"model {name}: {component} is {entry!r} in model_index.json, not a class PanoLoop "
            "loads (custom code is never run)"
        )
    return entry[1]


def refuse_sdxl_unet(unet: dict, name: str) -> None:
    if unet.get("addition_embed_type") == "text_time":
        found = 'addition_embed_type "text_time"'
    elif unet.get("cross_attention_dim") == SDXL_CROSS_ATTENTION_DIM:
        found = f"cross_attention_dim {SDXL_CROSS_ATTENTION_DIM}"
    else:
        return
    raise BadInput(
        f"model {name} has an SDXL UNet ({found} in unet/config.json); "
        "PanoLoop's AnimateDiff runs Stable Diffusion 1.5 bases"
    )


# --------------------------------------------------------------------------- inspection


@dataclass(frozen=True)
class AdapterInfo:
    """A motion adapter checked before loading: where it is and what it holds."""

    source: Source
    max_frames: int
    variant: str | None

    @property
    def folder(self) -> Path:
        return self.source.folder


@dataclass(frozen=True)
class ModelInfo:
    """What the configs say, read before any weights load."""

    source: Source
    vae_factor: int
    sample_size: int  # the UNet's native latent window (rows = cols)
    align: int  # the UNet's total downsampling
    max_frames: int  # longest clip the motion module's positions allow
    unet_class: str  # "UNetMotionModel" (AnimateDiff pipeline) or "UNet2DConditionModel"
    tokenizer_class: str
    scheduler_config: dict
    train_timesteps: int
    variant: str | None = None
    adapter: AdapterInfo | None = field(default=None)

    @property
    def folder(self) -> Path:
        return self.source.folder

    @property
    def revision(self) -> str:
        return self.source.revision

    @property
    def name(self) -> str:
        return self.source.name


def inspect_model(
    source: str,
    *,
    motion_adapter: str | None = None,
    offline: bool = False,
    revision: str | None = None,
    adapter_revision: str | None = None,
    variant: str | None = None,
    prefer_fp16: bool = False,
) -> ModelInfo:
    """Resolve and check an AnimateDiff pipeline (or SD 1.5 base + motion adapter).

    Reads only file listings and JSON; raises :class:`BadInput` naming the value for
    every refusal. ``variant`` (e.g. ``"fp16"``) must exist for every weighted
    component; with ``prefer_fp16`` (a GPU in float16) the fp16 files are used when
    every component has them.
    """
    base = locate_source(source, offline=offline, revision=revision)
    name = base.name
    index = read_index(base)
    refuse_sdxl_index(index, name)
    classes = {c: component_class(index, c, name) for c in PIPELINE_COMPONENTS}
    unet = _read_config(base.folder / "unet" / "config.json", f"model {name}")
    vae = _read_config(base.folder / "vae" / "config.json", f"model {name}")
    text = _read_config(base.folder / "text_encoder" / "config.json", f"model {name}")
    scheduler = _read_config(base.folder / "scheduler" / "scheduler_config.json", f"model {name}")
    refuse_sdxl_unet(unet, name)
    where = f"model {name}: unet/config.json"
    sample_size = positive_int(unet, "sample_size", where)
    unet_blocks = positive_ints(unet, "block_out_channels", where)
    vae_blocks = positive_ints(vae, "block_out_channels", f"model {name}: vae/config.json")
    check_latent_channels(unet, vae, name)
    check_text_width(unet, text, name)
    train_timesteps = check_scheduler(scheduler, name)

    adapter = None
    if classes["unet"] == "UNetMotionModel":
        if motion_adapter:
            raise BadInput(
                f"model {name} already holds motion modules (UNetMotionModel); "
                f"drop --motion-adapter {motion_adapter} or give a Stable Diffusion 1.5 base"
            )
        max_frames = positive_int(unet, "motion_max_seq_length", where, default=32)
    elif motion_adapter:
        adapter_source = locate_source(
            motion_adapter,
            offline=offline,
            kind="motion adapter",
            revision=adapter_revision,
            components=("",),
        )
        max_frames = check_adapter(adapter_source, unet_blocks)
        adapter = AdapterInfo(adapter_source, max_frames, None)
    else:
        raise BadInput(
            f"model {name} has no motion module; pass --motion-adapter to pair it with one"
        )

    chosen = choose_variant(base, adapter, variant, prefer_fp16)
    for component in WEIGHTED_COMPONENTS:
        check_weights(base, component, chosen, f"model {name}")
    if adapter is not None:
        check_weights(adapter.source, "", chosen, f"motion adapter {adapter.source.name}")
        adapter = AdapterInfo(adapter.source, adapter.max_frames, chosen)
    return ModelInfo(
        source=base,
        vae_factor=2 ** (len(vae_blocks) - 1),
        sample_size=sample_size,
        align=2 ** (len(unet_blocks) - 1),
        max_frames=max_frames,
        unet_class=classes["unet"],
        tokenizer_class=classes["tokenizer"],
        scheduler_config=scheduler,
        train_timesteps=train_timesteps,
        variant=chosen,
        adapter=adapter,
    )


def check_latent_channels(unet: dict, vae: dict, name: str) -> None:
    """The UNet denoises the VAE's 4-channel latents (an inpainting UNet takes 9)."""
    unet_in = positive_int(unet, "in_channels", f"model {name}: unet/config.json", default=4)
    latent = positive_int(vae, "latent_channels", f"model {name}: vae/config.json", default=4)
    if unet_in != AnimateDiffBackend.latent_channels or latent != unet_in:
        raise BadInput(
            f"model {name}: unet in_channels {unet_in} and vae latent_channels {latent} "
            f"must both be {AnimateDiffBackend.latent_channels} (a text-to-image SD 1.5 base)"
        )


def check_text_width(unet: dict, text: dict, name: str) -> None:
    """The text encoder's width must be what the UNet's cross-attention reads."""
    if text.get("model_type", "clip_text_model") != "clip_text_model":
        raise BadInput(
            f"model {name}: text_encoder model_type is {text.get('model_type')!r}, "
            "not a CLIP text model"
        )
    width = positive_int(text, "hidden_size", f"model {name}: text_encoder/config.json", 512)
    cross = unet.get("cross_attention_dim", 1280)
    if cross != width:
        raise BadInput(
            f"model {name}: unet cross_attention_dim {cross!r} does not match "
            f"the text encoder's hidden_size {width}"
        )


def check_scheduler(config: dict, name: str) -> int:
    """The scheduler config's numbers; returns ``num_train_timesteps``."""
    where = f"model {name}: scheduler/scheduler_config.json"
    steps = positive_int(config, "num_train_timesteps", where, default=1000)
    positive_number(config, "beta_start", where, 0.0001)
    positive_number(config, "beta_end", where, 0.02)
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in ("epsilon", "v_prediction"):
        raise BadInput(
            f"{where}: prediction_type must be epsilon or v_prediction, got {prediction!r}"
        )
    return steps


def check_adapter(adapter: Source, unet_blocks: list[int]) -> int:
    """A motion adapter's config (at its root) against the base; returns its frame limit."""
    what = f"motion adapter {adapter.name}"
    config = _read_config(adapter.folder / "config.json", what)
    if config.get("_class_name", "MotionAdapter") != "MotionAdapter":
        raise BadInput(
            f"{what}: config.json names {config.get('_class_name')!r}, not MotionAdapter"
        )
    blocks = positive_ints(config, "block_out_channels", f"{what}: config.json")
    if blocks == SDXL_ADAPTER_BLOCKS:
        raise BadInput(
            f"{what} is an SDXL motion adapter (block_out_channels {blocks}); "
            "PanoLoop's AnimateDiff runs SD 1.5 adapters "
            "(e.g. guoyww/animatediff-motion-adapter-v1-5-2)"
        )
    if blocks != unet_blocks:
        raise BadInput(
            f"{what} has block_out_channels {blocks}, the base UNet {unet_blocks}; they must match"
        )
    return positive_int(config, "motion_max_seq_length", f"{what}: config.json", default=32)


def choose_variant(
    base: Source, adapter: AdapterInfo | None, variant: str | None, prefer_fp16: bool
) -> str | None:
    """The weight variant to load: ``variant`` if given; else fp16 when ``prefer_fp16``
    and the model (and adapter) have fp16 files for every weighted component."""
    if variant is not None:
        if not re.fullmatch(r"[A-Za-z0-9_]+", variant):
            raise BadInput(f"--variant must be a name like fp16, got {variant!r}")
        return variant
    if not prefer_fp16 or not has_variant(base, WEIGHTED_COMPONENTS, "fp16"):
        return None
    if adapter is not None and not has_variant(adapter.source, ("",), "fp16"):
        return None
    return "fp16"


# --------------------------------------------------------------------------- devices


def check_device_name(device: str) -> None:
    """Refuse a device PanoLoop cannot run on, before torch is even imported."""
    if not DEVICE_NAME.match(device):
        raise BadInput(
            f"device {device!r} is not one of auto, cpu, cuda, cuda:N or mps",
            fix="choose device auto to use the best one available",
        )


def pick_device(device: str) -> str:
    """``auto`` → cuda, then mps, then cpu; an explicit device must be available."""
    check_device_name(device)
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BadInput(
                f"device {device} requested but this torch has no CUDA",
                fix="install a CUDA build of torch, or choose device auto/cpu",
            )
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise BadInput(f"device {device}: this machine has {torch.cuda.device_count()} GPU(s)")
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


def fetch_weights(source: Source, components: tuple[str, ...], variant: str | None) -> Path:
    """Download only ``components``' weights in ``variant`` (hub ids online); the folder."""
    if source.repo_id is None or source.cached:
        return source.folder
    from huggingface_hub import snapshot_download

    wanted = hub_files(source.files, components, variant)
    try:
        return Path(
            snapshot_download(source.repo_id, revision=source.revision, allow_patterns=wanted)
        )
    except Exception as exc:
        raise PanoLoopError(
            f"could not download {source.name} at {source.revision}: {type(exc).__name__}"
        ) from None


def load_components(info: ModelInfo, torch_dtype: Any) -> dict[str, Any]:
    """Each component from its known class, safetensors only, in ``info.variant``."""
    from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel, UNetMotionModel
    from transformers import CLIPTextModel, CLIPTokenizer, CLIPTokenizerFast

    from .backends import animatediff_scheduler

    folder = fetch_weights(info.source, PIPELINE_COMPONENTS, info.variant)
    weights = {"use_safetensors": True, "dtype": torch_dtype, "variant": info.variant}
    unet_class = UNetMotionModel if info.unet_class == "UNetMotionModel" else UNet2DConditionModel
    tokenizer_class = CLIPTokenizerFast if info.tokenizer_class.endswith("Fast") else CLIPTokenizer
    components = {
        "unet": unet_class.from_pretrained(folder, subfolder="unet", **weights),
        "vae": AutoencoderKL.from_pretrained(folder, subfolder="vae", **weights),
        "text_encoder": CLIPTextModel.from_pretrained(folder / "text_encoder", **weights),
        "tokenizer": tokenizer_class.from_pretrained(folder / "tokenizer"),
        "scheduler": animatediff_scheduler(info.scheduler_config),
        "motion_adapter": None,
    }
    if info.adapter is not None:
        adapter_folder = fetch_weights(info.adapter.source, ("",), info.adapter.variant)
        components["motion_adapter"] = MotionAdapter.from_pretrained(
            adapter_folder, use_safetensors=True, dtype=torch_dtype, variant=info.adapter.variant
        )
    return components


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

    Only the five components AnimateDiff uses (and the motion adapter) are downloaded
    and built, each from its known class; an SD 1.5 UNet and a motion adapter are
    joined into a ``UNetMotionModel`` by ``AnimateDiffPipeline`` itself. ``offline``
    is kept for callers: loading reads only the resolved folders, never the hub.

    ``vae_tiling`` decodes each frame in overlapping blended tiles (the VAE's own
    tiling), so decoding memory stops growing with the panorama; the wrapped columns
    of :meth:`AnimateDiffBackend.decode_frame` keep the 360° seam inside the image.
    ``vae_slicing`` is the VAE's batch slicing: frames are decoded one at a time
    already, so it changes nothing for this backend (kept for other backends).
    """
    from diffusers import AnimateDiffPipeline

    del offline  # resolved folders only: nothing here reaches the hub
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    try:
        components = load_components(info, torch_dtype)
        pipe = AnimateDiffPipeline(**components, feature_extractor=None, image_encoder=None)
    except (OSError, ValueError, TypeError, RuntimeError) as exc:
        raise PanoLoopError(
            f"could not load model {info.name}: {str(exc).splitlines()[0]}",
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
