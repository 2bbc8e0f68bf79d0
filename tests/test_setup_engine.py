"""Set Up Engine: the install plan per platform, the requirements split, Animate only.

The plan tests prove behaviour of the pure planner (which torch build, from which index,
with which exact pip command lines) for every platform users have, on any machine. The
base-only tests run the real engine in a Python that can import only the base
dependencies (and what they need), exactly what an "Animate only" setup installs: torch
is not there at all, so a stray import fails the command.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO

from blender_addon.setup_engine import (
    TORCH_INDEX,
    NvidiaGpu,
    PlatformFacts,
    Requirements,
    command_label,
    parse_driver_cuda,
    parse_gpu_line,
    plan_install,
    progress_detail,
    read_requirements,
    requirement_name,
    run_pip,
)

PY = "/home/user/engine-env/bin/python"
WIN_PY = r"C:\Users\u\AppData\Roaming\Blender\extensions\panoloop\engine-env\Scripts\python.exe"
REQS = Requirements(
    base=("numpy==1.26.4", "numba==0.68.1"),
    generate=("torch==2.13.0", "diffusers==0.42.1", "huggingface_hub==2.4.0"),
)
PIP = (PY, "-m", "pip", "install")
RAW = (*PIP, "--progress-bar", "raw")
UPGRADE_PIP = (*PIP, "pip==26.0.1")
BASE = (*RAW, "numpy==1.26.4", "numba==0.68.1")
REST = (*RAW, "numpy==1.26.4", "numba==0.68.1", "diffusers==0.42.1", "huggingface_hub==2.4.0")

RTX_4090 = NvidiaGpu("NVIDIA GeForce RTX 4090", (8, 9), (13, 0))
RTX_3060_OLD_DRIVER = NvidiaGpu("NVIDIA GeForce RTX 3060", (8, 6), (12, 4))
GTX_1080 = NvidiaGpu("NVIDIA GeForce GTX 1080", (6, 1), (13, 0))
RTX_5090_OLD_DRIVER = NvidiaGpu("NVIDIA GeForce RTX 5090", (12, 0), (12, 8))
RTX_5090 = NvidiaGpu("NVIDIA GeForce RTX 5090", (12, 0), (13, 0))
H200 = NvidiaGpu("NVIDIA H200", (9, 0), (13, 0))
GH200 = NvidiaGpu("NVIDIA GH200 480GB", (9, 0), (13, 0))
K80_OLD_DRIVER = NvidiaGpu("Tesla K80", (3, 7), (11, 4))

WINDOWS = PlatformFacts("Windows", "AMD64")
LINUX = PlatformFacts("Linux", "x86_64")
LINUX_ARM = PlatformFacts("Linux", "aarch64")
MAC_ARM = PlatformFacts("Darwin", "arm64", (15, 1))
MAC_ARM_13 = PlatformFacts("Darwin", "arm64", (13, 6))
MAC_INTEL = PlatformFacts("Darwin", "x86_64", (14, 7))


def with_gpu(facts: PlatformFacts, gpu: NvidiaGpu) -> PlatformFacts:
    return PlatformFacts(facts.system, facts.machine, facts.macos_version, gpu)


def cuda_torch(build: str, python: str = PY) -> tuple[str, ...]:
    return (
        python, "-m", "pip", "install", "--progress-bar", "raw",
        "--index-url", f"https://download.pytorch.org/whl/{build}", f"torch==2.13.0+{build}",
    )  # fmt: skip


# ------------------------------------------------------------------ the plan, per platform


@pytest.mark.parametrize(
    ("facts", "build", "device"),
    [
        (with_gpu(WINDOWS, RTX_4090), "cu130", "cuda"),
        (with_gpu(WINDOWS, RTX_3060_OLD_DRIVER), "cu126", "cuda"),
        (with_gpu(WINDOWS, GTX_1080), "cu126", "cuda"),
        (with_gpu(WINDOWS, RTX_5090), "cu130", "cuda"),
        (WINDOWS, "cpu", "cpu"),
        (with_gpu(LINUX, H200), "cu130", "cuda"),
        (with_gpu(LINUX, RTX_3060_OLD_DRIVER), "cu126", "cuda"),
        (LINUX, "cpu", "cpu"),
        (with_gpu(LINUX_ARM, GH200), "cu130", "cuda"),
        (LINUX_ARM, "cpu", "cpu"),
    ],
    ids=[
        "windows-rtx4090-r580",
        "windows-rtx3060-cuda12.4-driver",
        "windows-pascal",
        "windows-blackwell",
        "windows-no-nvidia-smi",
        "linux-x86_64-h200",
        "linux-x86_64-cuda12.4-driver",
        "linux-x86_64-no-nvidia",
        "linux-aarch64-gh200",
        "linux-aarch64-no-nvidia",
    ],  # fmt: skip
)
def test_windows_and_linux_take_torch_from_pytorchs_index(facts, build, device):
    """Torch alone from PyTorch's index with its build pinned, then everything else."""
    plan = plan_install(facts, "full", REQS, PY)
    assert (plan.mode, plan.torch_build, plan.expected_device) == ("full", build, device)
    assert plan.commands == (UPGRADE_PIP, cuda_torch(build), REST)


def test_windows_commands_use_the_environments_own_python():
    plan = plan_install(with_gpu(WINDOWS, RTX_4090), "full", REQS, WIN_PY)
    assert plan.commands[0] == (WIN_PY, "-m", "pip", "install", "pip==26.0.1")
    assert plan.commands[1] == cuda_torch("cu130", WIN_PY)
    assert all(command[0] == WIN_PY for command in plan.commands)


def test_apple_silicon_takes_the_standard_pypi_wheel_for_mps():
    plan = plan_install(MAC_ARM, "full", REQS, PY)
    assert (plan.mode, plan.torch_build, plan.expected_device) == ("full", "pypi", "mps")
    assert plan.commands == (UPGRADE_PIP, (*RAW, "torch==2.13.0"), REST)
    assert not any("--index-url" in command for command in plan.commands)


@pytest.mark.parametrize(
    ("facts", "said"),
    [
        (MAC_INTEL, "Intel Mac: PyTorch publishes no torch 2.13 for macOS on Intel"),
        (MAC_ARM_13, "macOS 13.6: torch 2.13 for Apple silicon needs macOS 14 or newer"),
        (PlatformFacts("FreeBSD", "amd64"), "FreeBSD amd64: PyTorch publishes no torch 2.13"),
    ],
    ids=["darwin-x86_64", "darwin-arm64-macos13", "freebsd"],
)
def test_no_torch_wheel_refuses_prompts_and_installs_the_still_to_loop_side(facts, said):
    plan = plan_install(facts, "full", REQS, PY)
    assert (plan.mode, plan.torch_build, plan.expected_device) == ("animate", None, "none")
    assert plan.commands == (UPGRADE_PIP, BASE)
    assert len(plan.notes) == 1 and plan.notes[0].startswith(said)
    assert "Generate World cannot run here" in plan.notes[0]


@pytest.mark.parametrize(
    "facts",
    [
        with_gpu(WINDOWS, RTX_4090),
        WINDOWS,
        with_gpu(LINUX, H200),
        LINUX,
        with_gpu(LINUX_ARM, GH200),
        LINUX_ARM,
        MAC_ARM,
        MAC_INTEL,
    ],
    ids=[
        "windows-nvidia",
        "windows",
        "linux-nvidia",
        "linux",
        "linux-aarch64-nvidia",
        "linux-aarch64",
        "darwin-arm64",
        "darwin-x86_64",
    ],  # fmt: skip
)
def test_animate_only_installs_no_torch_on_any_platform(facts):
    plan = plan_install(facts, "animate", REQS, PY)
    assert (plan.mode, plan.torch_build, plan.expected_device) == ("animate", None, "none")
    assert plan.commands == (UPGRADE_PIP, BASE)
    assert plan.steps == 4  # environment, pip, base, device check


@pytest.mark.parametrize(
    ("gpu", "note"),
    [
        (RTX_5090_OLD_DRIVER, "update the NVIDIA driver (R580 or newer)"),
        (K80_OLD_DRIVER, "older than any torch 2.13 CUDA build"),
    ],
    ids=["blackwell-on-a-cuda-12.8-driver", "kepler"],
)
def test_a_gpu_no_cuda_build_runs_on_gets_the_cpu_build_and_says_why(gpu, note):
    """Not silently: the note names the GPU and what to change."""
    plan = plan_install(with_gpu(LINUX, gpu), "full", REQS, PY)
    assert (plan.torch_build, plan.expected_device) == ("cpu", "cpu")
    assert plan.commands[1] == cuda_torch("cpu")
    assert gpu.name in plan.notes[0] and note in plan.notes[0]


def test_unknown_driver_cuda_version_picks_by_gpu_generation():
    older = NvidiaGpu("NVIDIA GeForce RTX 3060", (8, 6), None)
    blackwell = NvidiaGpu("NVIDIA GeForce RTX 5090", (12, 0), None)
    assert plan_install(with_gpu(LINUX, older), "full", REQS, PY).torch_build == "cu126"
    assert plan_install(with_gpu(LINUX, blackwell), "full", REQS, PY).torch_build == "cu130"


def test_plan_from_the_real_pyproject():
    """The shipped requirement lists: torch alone from the index, then base + the rest."""
    reqs = read_requirements(REPO / "pyproject.toml")
    plan = plan_install(with_gpu(WINDOWS, RTX_4090), "full", reqs, PY)
    assert plan.commands[1] == cuda_torch("cu130")
    assert plan.commands[2] == (*RAW, *reqs.base, *reqs.generate_without_torch)
    assert "torch" not in {requirement_name(r) for r in plan.commands[2][6:]}
    assert plan.commands[2][6:] and all("==" in r for r in plan.commands[2][6:])
    assert TORCH_INDEX == "https://download.pytorch.org/whl"


def test_cluster_option_adds_ray_to_the_last_install_command():
    """Cluster (Ray): the shipped cluster extra joins the last pip command, in both modes;
    without the option no Ray is installed."""
    reqs = read_requirements(REPO / "pyproject.toml")
    assert [requirement_name(r) for r in reqs.cluster] == ["ray"]
    for mode in ("full", "animate"):
        plain = plan_install(LINUX, mode, reqs, PY)
        cluster = plan_install(LINUX, mode, reqs, PY, cluster=True)
        assert cluster.commands[:-1] == plain.commands[:-1]
        assert cluster.commands[-1] == (*plain.commands[-1], *reqs.cluster)
        assert not any("ray" in {requirement_name(a) for a in c} for c in plain.commands)


# ------------------------------------------------------------------ nvidia-smi and pip output

NVIDIA_SMI_HEADER = """\
Tue Dec  1 10:12:44 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.95.05              Driver Version: 580.95.05      CUDA Version: 13.0     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
"""
NVIDIA_SMI_WINDOWS_OLD = """\
+---------------------------------------------------------------------------------------+
| NVIDIA-SMI 551.86                 Driver Version: 551.86       CUDA Version: 12.4     |
"""


def test_nvidia_smi_header_gives_the_drivers_cuda_version():
    assert parse_driver_cuda(NVIDIA_SMI_HEADER) == (13, 0)
    assert parse_driver_cuda(NVIDIA_SMI_WINDOWS_OLD) == (12, 4)
    assert parse_driver_cuda("NVIDIA-SMI has failed because it couldn't communicate") is None


def test_nvidia_smi_gpu_query_lines():
    assert parse_gpu_line("NVIDIA H200, 9.0") == ("NVIDIA H200", (9, 0))
    assert parse_gpu_line("NVIDIA GeForce RTX 5090, 12.0\n") == ("NVIDIA GeForce RTX 5090", (12, 0))
    assert parse_gpu_line("Tesla K80, [N/A]") == ("Tesla K80", None)
    assert parse_gpu_line("Quadro P4000") == ("Quadro P4000", None)
    assert parse_gpu_line("  ") is None


def test_pip_lines_become_progress_details_with_a_download_percentage():
    head = "Downloading torch-2.13.0+cu130-cp311-cp311-win_amd64.whl (2594.5 MB)"
    assert progress_detail("  " + head + "\n", "Collecting torch==2.13.0+cu130") == head
    assert progress_detail("Progress 0 of 2594544868", head) == f"{head} 0%"
    assert progress_detail("Progress 1064000000 of 2594544868", f"{head} 0%") == f"{head} 41%"
    assert progress_detail("\n", head) is None
    assert command_label(cuda_torch("cu130")) == "installing torch==2.13.0+cu130"
    assert command_label(REST) == "installing 4 packages"


# ------------------------------------------------------------------ requirements = imports


def imported_top_modules(paths: list[Path]) -> set[str]:
    """Top-level modules imported anywhere in these files (absolute imports only)."""
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"engine", "__future__"}


def distributions_of(modules: set[str]) -> set[str]:
    """Installed distributions (normalised names) providing these top-level modules."""
    provides = importlib.metadata.packages_distributions()
    return {requirement_name(dist) for m in modules for dist in provides.get(m, [m])}


def test_base_requirements_are_exactly_what_the_still_to_loop_engine_imports():
    """Every base pin is imported by the engine outside the prompt side, and nothing else is.

    The prompt side is ``engine/generate/`` and ``engine/device.py`` (which imports torch
    only when it is installed, to name the device); the cluster side, ``engine/cluster/``,
    imports Ray (the cluster extra) only when a cluster is asked for.
    """
    reqs = read_requirements(REPO / "pyproject.toml")
    engine = REPO / "engine"
    prompt_side = {engine / "device.py", *(engine / "generate").rglob("*.py")}
    prompt_side |= set((engine / "cluster").rglob("*.py"))
    animate_side = [p for p in engine.rglob("*.py") if p not in prompt_side]
    assert distributions_of(imported_top_modules(animate_side)) == {
        requirement_name(r) for r in reqs.base
    }
    # The prompt side may also use what its pinned packages bring (psutil, by accelerate),
    # and the cluster extra (Ray, for generate --ray and render-cluster).
    everything = distributions_of(imported_top_modules(list(engine.rglob("*.py"))))
    cluster = extra_requirements(REPO / "pyproject.toml", "cluster")
    declared = {requirement_name(r) for r in (*reqs.base, *reqs.generate, *cluster)}
    brought = requirement_closure({requirement_name(r) for r in reqs.generate})
    assert everything <= declared | brought, everything - declared - brought
    assert not {"scipy", "py360convert", "pytest", "bpy"} & declared


def extra_requirements(pyproject: Path, extra: str) -> list[str]:
    """The pins of one optional extra of ``pyproject``."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return list(project["optional-dependencies"][extra])


# ------------------------------------------------------------------ Animate only, for real


def requirement_closure(names: set[str]) -> set[str]:
    """These installed distributions and everything they require (extras left out)."""
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a requirement for another platform or Python
        seen.add(name)
        for requirement in dist.requires or []:
            if "extra ==" not in requirement:
                todo.append(requirement_name(requirement))
    return seen


@pytest.fixture(scope="module")
def base_only_site(tmp_path_factory) -> Path:
    """A folder holding only the base requirements' installed files (symlinks)."""
    site = tmp_path_factory.mktemp("base-only-site")
    reqs = read_requirements(REPO / "pyproject.toml")
    for name in sorted(requirement_closure({requirement_name(r) for r in reqs.base})):
        dist = importlib.metadata.distribution(name)
        for top in {Path(str(f)).parts[0] for f in dist.files or []}:
            if top != ".." and not (site / top).exists():
                (site / top).symlink_to(Path(str(dist.locate_file(top))))
    return site


def run_base_only(site: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -S`` (no site-packages) with only the base install and the repo on the path."""
    env = {
        "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]),
        "PATH": os.environ.get("PATH", ""),
        "NUMBA_CACHE_DIR": str(site / ".numba"),
    }
    command = [sys.executable, "-S", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_base_only_python_really_lacks_torch(base_only_site):
    """Guards the tests below against passing because torch leaked into the path."""
    probe = "import importlib.util as u; print([bool(u.find_spec(m)) for m in {}])"
    modules = ["numpy", "cv2", "numba", "torch", "diffusers", "scipy", "py360convert"]
    result = run_base_only(base_only_site, "-c", probe.format(modules))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.lower()) == [True, True, True, False, False, False, False]


def test_animate_views_export_and_device_run_without_torch(base_only_site, tmp_path):
    """What an "Animate only" setup gets: animate, views and export work; device says so."""
    yy, xx = np.mgrid[0:64, 0:128]
    still = np.dstack([(xx * 2) % 256, (yy * 4) % 256, ((xx + yy) * 3) % 256]).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "still.png"), still)
    loop = tmp_path / "loop"
    result = run_base_only(
        base_only_site, "-m", "engine", "animate", str(tmp_path / "still.png"),
        "--out", str(loop), "--seconds", "1", "--fps", "4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(list((loop / "frames").glob("frame_*.png"))) == 4

    cameras = tmp_path / "cameras.json"
    cameras.write_text(json.dumps([camera(64, 48)]), encoding="utf-8")
    views = tmp_path / "views"
    result = run_base_only(
        base_only_site, "-m", "engine", "views", "--panorama", str(loop),
        "--cameras", str(cameras), "--out", str(views),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(list((views / "Cam").glob("frame_*.png"))) == 4

    export = tmp_path / "export"
    result = run_base_only(
        base_only_site, "-m", "engine", "export", str(loop), "--out", str(export),
        "--size", "128x64", "--cubemap",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert any(export.rglob("*.mp4"))

    result = run_base_only(base_only_site, "-m", "engine", "device", "--json")
    assert result.returncode == 0, result.stderr
    device = json.loads(result.stdout)
    assert (device["torch"], device["device"]) == (None, "none")
    assert device["summary"].startswith("animate only: no torch")
    assert re.search(r"diffusers", " ".join(device["missing"]))


def test_animate_prior_diffusion_without_torch_says_how_to_install(base_only_site, tmp_path):
    """An Animate Only setup asked for the diffusion prior: one line naming what is missing
    and how to get it, exit 2, nothing written (the procedural prior needs none of it)."""
    cv2.imwrite(str(tmp_path / "still.png"), np.zeros((64, 128, 3), np.uint8))
    result = run_base_only(
        base_only_site, "-m", "engine", "animate", str(tmp_path / "still.png"),
        "--out", str(tmp_path / "loop"), "--prior", "diffusion", "--model", "some/model",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("error: --prior diffusion needs torch"), line
    assert "Set Up Engine" in line and "[generate]" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["still.png"]


def camera(width: int, height: int) -> dict:
    """A Blender camera at the origin looking along +X (the panorama's centre)."""
    return {
        "name": "Cam",
        "matrix_world": [[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]],
        "lens": 30.0,
        "sensor_width": 36.0,
        "sensor_height": 24.0,
        "sensor_fit": "AUTO",
        "shift_x": 0.0,
        "shift_y": 0.0,
        "resolution_x": width,
        "resolution_y": height,
        "pixel_aspect_x": 1.0,
        "pixel_aspect_y": 1.0,
    }


def test_device_check_with_torch_names_the_device(tmp_path):
    """In the test environment (torch installed): the version and the auto device."""
    import torch

    record = tmp_path / "sub" / "device.json"
    result = subprocess.run(
        [sys.executable, "-m", "engine", "device", "--json", "--record", str(record)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed == json.loads(record.read_text(encoding="utf-8"))
    assert printed["torch"] == torch.__version__
    mps = torch.backends.mps.is_available()
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    assert printed["device"] == expected and printed["missing"] == []
    assert printed["summary"].startswith(f"torch {torch.__version__}")
    assert [p.name for p in record.parent.iterdir()] == ["device.json"]


def test_run_pip_forwards_each_line_and_download_percent_as_progress(capfd):
    """A real child process printing pip's lines: the add-on receives them as events."""
    lines = [
        "Collecting torch==2.13.0+cu130",
        "  Downloading torch-2.13.0+cu130-cp311-cp311-win_amd64.whl (2594.5 MB)",
        "Progress 0 of 1000",
        "Progress 3 of 1000",
        "Progress 500 of 1000",
        "Progress 1000 of 1000",
        "Successfully installed torch-2.13.0+cu130",
    ]
    script = "import sys\nfor line in sys.argv[1:]: print(line)"
    run_pip((sys.executable, "-c", script, *lines), 3, 5, "installing torch")
    out, err = capfd.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    head = "Downloading torch-2.13.0+cu130-cp311-cp311-win_amd64.whl (2594.5 MB)"
    assert [e["detail"] for e in events] == [
        lines[0], head, f"{head} 0%", f"{head} 50%", f"{head} 100%", lines[-1],
    ]  # fmt: skip
    assert {(e["event"], e["stage"], e["step"], e["total"]) for e in events} == {
        ("progress", "set up engine: installing torch", 3, 5)
    }
    assert err.splitlines() == lines  # the log keeps pip's own output


def test_run_pip_failure_raises():
    with pytest.raises(subprocess.CalledProcessError):
        run_pip((sys.executable, "-c", "raise SystemExit(1)"), 2, 4, "installing pip")
