"""Generate on real machines: precision, long prompts, motion speed, memory before the run.

Runs the tiny random-weight AnimateDiff (real diffusers classes, ``save_pretrained``,
loaded through our loader; ``tiny_models.py``). With tiny weights the pictures mean
nothing: these tests prove plumbing and arithmetic (which dtypes exist, what the text
encoder sees, how many frames are denoised and written, what the estimate refuses),
not image quality. The interpolation's behaviour on real motion is in
``test_interpolate.py``.
"""

from __future__ import annotations

import copy
import json
import shutil
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from engine import cli
from engine.errors import BadInput, PanoLoopError
from engine.media import list_frames, read_manifest, read_mp4
from engine.progress import JobContext

SMALL = ["--width", "128", "--height", "64", "--window-frames", "4"]
FAST = ["--steps", "2", "--sphere-latitudes", "0", "--sphere-longitudes", "1"]
#: 120 words; the tiny tokenizer spells words letter by letter, so it is ~700 tokens.
LONG_PROMPT = " ".join(["misty pine forest at dawn with a lake"] * 15)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fresh_backend(tiny_model):
    from engine.generate.loading import inspect_model, load_animatediff

    return load_animatediff(inspect_model(str(tiny_model)), window_frames=4, device="cpu")


# --------------------------------------------------------------------------- precision


class DtypeRecorder(TorchDispatchMode):
    """Every dtype of every tensor an op reads or makes while the mode is on."""

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: dict[torch.dtype, str] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten((args, kwargs or {}, out))[0]:
            if isinstance(value, torch.Tensor):
                self.dtypes.setdefault(value.dtype, str(func))
        return out


def test_no_float64_tensor_while_sampling_and_decoding(backend):
    """Plumbing: a whole dynamic plan (sphere views, coarse pass, refine, blended tail —
    10 steps, the length at which the float64 blend weights used to break MPS) and a
    decode, recorded op by op: no tensor of any op is float64."""
    from engine.generate.sampler import GenerateRequest, decode_video, sample_latent
    from engine.generate.schedule import default_blend_steps

    probe = DtypeRecorder()
    with probe:  # the recorder sees a float64 that crosses over from numpy
        torch.as_tensor(np.ones(3)).reshape(-1)
    assert torch.float64 in probe.dtypes

    request = GenerateRequest("pine", 128, 64, 4, 10, sphere_latitudes=(0,), sphere_longitudes=1)
    assert default_blend_steps(10) >= 1
    recorder = DtypeRecorder()
    with recorder:
        result = sample_latent(backend, request, JobContext())
        decode_video(backend, result.latent[:, :1], JobContext())
    assert "blend" in [s.views for s in result.stages]
    assert torch.float32 in recorder.dtypes
    assert torch.float64 not in recorder.dtypes, recorder.dtypes[torch.float64]


def overflowing_vae(tiny_model):
    """A backend whose float16 VAE overflows: the decoder's first convolution scaled ×1e5
    (its outputs pass 65504, the float16 maximum; the GroupNorm after it makes the
    float32 decode indifferent to the scale)."""
    fp32 = fresh_backend(tiny_model)
    with torch.no_grad():
        fp32.pipe.vae.decoder.conv_in.weight *= 1e5
    fp16 = fresh_backend(tiny_model)
    fp16.pipe.vae = copy.deepcopy(fp32.pipe.vae).to(torch.float16)
    return fp32, fp16


def test_fp16_vae_overflow_upcasts_and_gives_finite_frames(tiny_model):
    """Behaviour: the float16 VAE decodes Inf/NaN here (checked), the backend upcasts
    it and the frame is the float32 decode, not black; the manifest says so."""
    fp32, fp16 = overflowing_vae(tiny_model)
    latent = torch.randn(4, 8, 16, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        raw = fp16.pipe.vae.decode(latent[None].half() / fp16.scaling_factor).sample
    assert not torch.isfinite(raw).all()
    frame = fp16.decode_frame(latent)
    assert fp16.vae_upcast and fp16.describe()["vae_upcast"] is True
    assert fp16.pipe.vae.dtype == torch.float32
    reference = fp32.decode_frame(latent).astype(int)
    assert frame.std() > 5  # a picture, not a black or flat frame
    assert np.abs(frame.astype(int) - reference).mean() < 1.0
    assert fp32.describe()["vae_upcast"] is False


def test_nan_latent_and_broken_vae_are_one_clear_error(tiny_model, backend):
    latent = torch.randn(4, 8, 16, generator=torch.Generator().manual_seed(0))
    latent[1, 3, 5] = float("nan")
    with pytest.raises(PanoLoopError, match="NaN or Inf") as caught:
        backend.decode_frame(latent)
    assert "--dtype float32" in caught.value.fix and "\n" not in str(caught.value)
    broken = fresh_backend(tiny_model)
    with torch.no_grad():
        broken.pipe.vae.decoder.conv_out.bias.fill_(float("nan"))
    with pytest.raises(PanoLoopError, match="even in float32"):
        broken.decode_frame(torch.zeros(4, 8, 16))


def test_cuda_attention_is_sdpa_and_the_cpu_keeps_its_processors(tiny_model):
    """Plumbing: on a CUDA device every attention (spatial, motion, VAE) is set to
    PyTorch's SDPA processor, giving the same noise; elsewhere nothing changes. (No
    GPU here: the function is run with the device name on CPU-resident modules.)"""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    from engine.generate.backends import use_sdpa_on_cuda

    b = fresh_backend(tiny_model)
    embeds = b.encode_prompt("pine", "", 7.5)
    window = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    b.pipe.unet.set_attn_processor(AttnProcessor())
    b.pipe.vae.set_attn_processor(AttnProcessor())
    plain = b.predict_noise(window, 500, embeds, 7.5)
    assert use_sdpa_on_cuda(b.pipe, "cpu") == "default"
    assert all(isinstance(p, AttnProcessor) for p in b.pipe.unet.attn_processors.values())
    assert use_sdpa_on_cuda(b.pipe, "cuda") == "sdpa"
    processors = [*b.pipe.unet.attn_processors.values(), *b.pipe.vae.attn_processors.values()]
    assert len(processors) > 10 and all(isinstance(p, AttnProcessor2_0) for p in processors)
    assert any("motion" in name for name in b.pipe.unet.attn_processors)
    assert torch.allclose(b.predict_noise(window, 500, embeds, 7.5), plain, atol=1e-5)


# --------------------------------------------------------------------------- long prompts


def test_long_prompt_is_encoded_in_chunks_and_nothing_is_cut(backend):
    """Behaviour of the text path: 120 words make several 77-token chunks; a word
    changed after the first 77 tokens changes the states of its chunk and the noise."""
    embeds = backend.encode_prompt(LONG_PROMPT, "blurry", 7.5)
    assert embeds.chunks >= 2 and embeds.tokens > 77
    assert embeds.cond.shape == embeds.uncond.shape == (1, 77 * embeds.chunks, 32)
    assert embeds.describe()["prompt_chunks"] == embeds.chunks
    changed_prompt = "sea".join(LONG_PROMPT.rsplit("lake", 1))  # the last word only
    changed = backend.encode_prompt(changed_prompt, "blurry", 7.5)
    assert changed.chunks == embeds.chunks
    assert torch.equal(changed.cond[:, :77], embeds.cond[:, :77])  # first chunk: same words
    assert not torch.equal(changed.cond[:, 77:], embeds.cond[:, 77:])
    window = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    one = backend.predict_noise(window, 500, embeds, 7.5)
    two = backend.predict_noise(window, 500, changed, 7.5)
    assert (one - two).abs().max() > 1e-4


def test_short_prompt_encodes_exactly_as_diffusers(backend):
    """Reference: a prompt within one chunk gives diffusers' own AnimateDiffPipeline
    embeddings, prompt and negative prompt alike."""
    ours = backend.encode_prompt("misty pine forest", "blurry", 7.5)
    with torch.inference_mode():
        cond, uncond = backend.pipe.encode_prompt(
            "misty pine forest", "cpu", 1, True, negative_prompt="blurry"
        )
    assert ours.chunks == 1 and ours.tokens == len("misty pine forest".replace(" ", ""))
    assert torch.equal(ours.cond, cond) and torch.equal(ours.uncond, uncond)


# --------------------------------------------------------------------------- motion speed


def test_loop_timing_denoises_at_the_model_rate():
    from engine.generate.command import loop_timing

    t = loop_timing(4.0, None, 24.0, 8.0)
    assert (t.frames, t.denoised_frames) == (96, 32)  # 24 fps × 4 s, 8 × 4 s
    assert loop_timing(None, 4, 8.0, 8.0).denoised_frames == 4
    assert loop_timing(None, None, 8.0, 8.0).frames == 16
    assert loop_timing(2.5, None, 30.0, 8.0).frames == 75
    for args, named in (
        ((4.1, None, 30.0, 8.0), "choose 4 or 4.125 seconds"),
        ((4.0, 90, 24.0, 8.0), "--frames 90"),
        ((1.01, None, 24.0, 8.0), "1.01 s at 24 fps"),
        ((None, None, 0.0, 8.0), "fps must be a positive number, got 0.0"),
        ((2.0, None, 8.0, float("nan")), "--model-fps"),
    ):
        with pytest.raises(BadInput, match=named.replace(".", r"\.")):
            loop_timing(*args)


def test_cli_interpolates_to_the_output_rate_and_records_the_prompt(tiny_model, tmp_path):
    """Plumbing end to end: 0.5 s at 24 fps denoises 4 frames at the model's 8 frames/s
    and writes 12 (every third is a denoised frame); a 120-word prompt is recorded."""
    out = tmp_path / "out"
    argv = ["generate", "--prompt", LONG_PROMPT, "--model", str(tiny_model), "--out", str(out),
            *SMALL, *FAST, "--seconds", "0.5", "--fps", "24"]  # fmt: skip
    seen = []
    ctx = JobContext(progress=lambda stage, step, total: seen.append((stage, total)))
    assert cli.main(argv, ctx=ctx) == 0
    manifest = read_manifest(out)
    assert (manifest["frames"], manifest["fps"], manifest["seconds"]) == (12, 24.0, 0.5)
    assert (manifest["model_fps"], manifest["denoised_frames"]) == (8.0, 4)
    assert "optical flow" in manifest["interpolation"]
    assert manifest["prompt_chunks"] >= 2 and manifest["prompt_tokens"] > 77
    assert manifest["vae_tiling"] is False and manifest["vae_tiling_auto"] is False
    assert manifest["vae_upcast"] is False and manifest["attention"] == "default"
    assert len(list_frames(out / "frames")) == 12
    video, fps = read_mp4(out / "panorama.mp4")
    assert len(video) == 12 and fps == 24
    assert ("interpolate", 12) in seen
    assert max(total for stage, total in seen if stage.startswith("decode")) == 4


def test_addon_builds_seconds_and_fps_for_generate():
    """The add-on passes scene seconds and fps; the engine derives both frame counts."""
    source = Path(__file__).parents[1].joinpath("blender_addon", "commands.py").read_text()
    start = source.index("def generate_job")
    end = source.find("\ndef ", start + 1)
    body = source[start : end if end > 0 else len(source)]
    assert '"--seconds", repr(float(settings.seconds))' in body
    assert '"--frames"' not in body


# --------------------------------------------------------------------------- memory


def write_header_only(path: Path, shapes: dict[str, tuple[int, ...]], dtype: str = "F32") -> None:
    """A safetensors file whose header declares ``shapes`` (its data is left out: the
    estimate reads headers only, and these stand in for gigabytes of real weights)."""
    size = {"F32": 4, "F16": 2}[dtype]
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = int(np.prod(shape)) * size
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob)


@pytest.fixture(scope="module")
def sd15_layout(tmp_path_factory) -> Path:
    """SD 1.5 + v1.5 motion adapter as configs (diffusers defaults) and weight headers
    with the real parameter counts (UNet 859.5 M, adapter 453.2 M, VAE 83.7 M, CLIP 123.1 M)."""
    root = tmp_path_factory.mktemp("sd15")
    configs = {
        "unet": {"block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,
                 "sample_size": 64, "down_block_types": ["CrossAttnDownBlock2D"] * 3
                 + ["DownBlock2D"]},
        "vae": {"block_out_channels": [128, 256, 512, 512], "sample_size": 512,
                "latent_channels": 4},
        "text_encoder": {},
    }  # fmt: skip
    for name, config in configs.items():
        (root / "base" / name).mkdir(parents=True)
        (root / "base" / name / "config.json").write_text(json.dumps(config))
    params = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
    for name, count in params.items():
        write_header_only(root / "base" / name / "diffusion_pytorch_model.safetensors",
                          {"w": (count,)})  # fmt: skip
        # An fp16 variant beside it must not be counted twice.
        write_header_only(root / "base" / name / "diffusion_pytorch_model.fp16.safetensors",
                          {"w": (count,)}, "F16")  # fmt: skip
    write_header_only(root / "adapter" / "diffusion_pytorch_model.safetensors",
                      {"w": (453_150_720,)})  # fmt: skip
    return root


def test_parameter_count_comes_from_the_headers(tiny_model, backend):
    from engine.generate.memory import read_model_shape

    shape = read_model_shape(tiny_model)
    # What the files hold: parameters and saved buffers (the motion modules' positions).
    real = {name: sum(v.numel() for v in getattr(backend.pipe, name).state_dict().values())
            for name in ("unet", "vae", "text_encoder")}  # fmt: skip
    assert shape.component_params == real
    assert shape.vae_factor == 8 and shape.unet_channels == (32, 64)


def test_full_size_estimate_fits_real_gpus_and_refuses_with_what_to_change(sd15_layout):
    """The estimate for SD 1.5 + adapter: a 2048×1024 job fits a 24 GiB GPU; an 8K job
    on it is refused in one line that names the size, the numbers and a change that fits."""
    from engine.generate.memory import JobSize, check_fits, estimate, read_model_shape

    shape = read_model_shape(sd15_layout / "base", sd15_layout / "adapter")
    assert sum(shape.component_params.values()) == 1_519_386_027
    job = JobSize(2048, 1024, 32, 96, (16, 64, 64), True, "float16")
    need = estimate(shape, job)
    assert 2.5e9 < need.weights < 3.2e9  # 1.52 G parameters × 2 bytes
    assert 4 * 2**30 < need.device < 16 * 2**30
    gib = 2**30
    check_fits(shape, job, "cuda", free=24 * gib, host=64 * gib)  # never refused
    check_fits(shape, job, "cuda", free=need.device, host=need.host)  # exactly enough
    with pytest.raises(BadInput) as caught:
        check_fits(shape, job, "cuda", free=need.device - 1, host=64 * gib)
    big = JobSize(8192, 4096, 32, 96, (16, 64, 64), True, "float16")
    with pytest.raises(BadInput) as caught:
        check_fits(shape, big, "cuda", free=24 * gib, host=64 * gib)
    message = str(caught.value)
    assert "\n" not in message and "8192x4096" in message and "24.0 GiB free" in message
    assert "add --vae-tiling" in message
    tiled = JobSize(8192, 4096, 32, 96, (16, 64, 64), True, "float16", vae_tiling=True)
    check_fits(shape, tiled, "cuda", free=24 * gib, host=64 * gib)
    # What to change: the first option that fits, else the largest size that fits.
    tiled_4k = JobSize(4096, 2048, 32, 96, (16, 64, 64), True, "float16", vae_tiling=True)
    free = estimate(shape, tiled_4k).device - 1
    assert estimate(shape, replace(tiled_4k, cpu_offload=True)).device <= free
    with pytest.raises(BadInput, match=r"free: add --cpu-offload$"):
        check_fits(shape, tiled_4k, "cuda", free=free, host=64 * gib)
    both = replace(big, vae_tiling=True, cpu_offload=True)
    free = estimate(shape, replace(both, width=5760, height=2880)).device
    with pytest.raises(BadInput, match=r"free: choose 5760x2880$"):
        check_fits(shape, both, "cuda", free=free, host=64 * gib)
    with pytest.raises(BadInput, match="GiB of RAM for its frames"):
        check_fits(shape, tiled_4k, "cuda", free=24 * gib, host=2 * gib)


def test_vae_tiling_turns_on_by_itself_at_4096():
    from engine.generate.memory import auto_vae_tiling

    assert auto_vae_tiling(4096, False) and auto_vae_tiling(5760, False)
    assert not auto_vae_tiling(2048, False) and auto_vae_tiling(2048, True)


@pytest.fixture(scope="module")
def unloadable_model(tiny_model, tmp_path_factory) -> Path:
    """Configs with garbage weights: exit 2 proves the refusal came before loading."""
    folder = tmp_path_factory.mktemp("models") / "garbage"
    shutil.copytree(tiny_model, folder)
    for weights in folder.rglob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    return folder


def test_absurd_size_is_refused_before_loading(unloadable_model, tmp_path, capsys):
    """``generate --width 65536`` (issue 16): refused by the memory estimate, one line
    with the numbers, before any weight loads, nothing written."""
    width = 65536
    argv = ["generate", "--prompt", "pine", "--model", str(unloadable_model),
            "--out", str(tmp_path / "out"), "--width", str(width), "--height", str(width // 2),
            "--window-frames", "4", "--device", "cpu"]  # fmt: skip
    assert cli.main(argv, ctx=JobContext()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{width}x{width // 2}" in err[0] and "GiB" in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_configs_that_are_not_what_diffusers_writes_fall_back_without_a_traceback(tmp_path):
    from engine.generate.memory import read_model_shape

    (tmp_path / "unet").mkdir()
    (tmp_path / "vae").mkdir()
    (tmp_path / "unet" / "config.json").write_text(
        json.dumps(
            {"block_out_channels": "wide", "layers_per_block": [2, 3], "down_block_types": 5}
        )  # fmt: skip
    )
    (tmp_path / "vae" / "config.json").write_text("[1, 2]")
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\xff" * 40)
    shape = read_model_shape(tmp_path)
    assert shape.unet_channels == (320, 640, 1280, 1280) and shape.unet_layers == 3
    assert shape.component_params["unet"] == 10  # an unreadable header: its size in float32
