"""Renders on a Ray cluster (``engine render-cluster``, the Render Cluster preference).

Real Blender (the bpy module, Cycles on the CPU, tiny sizes) and a real Ray cluster: one
head with 2 CPUs started for the module (``ray start --head --block``, stopped by its own
pid at the end), which every driver joins by address; tasks get 1 CPU each, so 2 run at
once. Behaviour, not plumbing: the frames are compared pixel for pixel with the same
scene rendered on this machine in one Blender (all threads), a worker is killed for
real mid-job, a cancel is sent through the worker protocol. The add-on's operators
(*Render All Cameras*, *Export for VR* with Scene 360°) run in the bpy module with the
built extension, the Render Cluster preference set and not.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray", reason="the cluster extra: pip install -e '.[test]'")
from engine.cluster.connect import parse_cluster  # noqa: E402
from engine.contract import BadInput  # noqa: E402
from engine.media import (  # noqa: E402
    frame_path,
    panorama_manifest,
    read_image,
    read_mp4,
    write_image,
    write_manifest,
)

REPO = Path(__file__).resolve().parents[1]
FRAMES = 4
RAY = Path(sys.executable).with_name("ray")

SCENE_SCRIPT = textwrap.dedent(
    """
    import math, sys
    from pathlib import Path
    import bpy
    sys.path[:0] = [{repo!r}]
    from blender_addon import render

    out, loop = Path({out!r}), Path({loop!r})
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 4  # few samples: noisy frames, so any change of seed shows
    scene.cycles.use_denoising = False
    scene.cycles.seed = 7
    scene.view_settings.view_transform = "Standard"
    scene.render.resolution_x, scene.render.resolution_y = 32, 24
    scene.render.resolution_percentage = 100
    scene.frame_start, scene.frame_end = 1, {frames}
    # The World plays the loop as an image sequence (not packable: shipped as files).
    world = bpy.data.worlds.new("W")
    world.use_nodes = True
    world.cycles.sampling_method = "NONE"
    tree = world.node_tree
    env = tree.nodes.new("ShaderNodeTexEnvironment")
    env.name = render.contract.ENV_NODE_NAME
    env.image = bpy.data.images.load(str(loop / "frames" / "frame_000000.png"))
    env.image.source = "SEQUENCE"
    user = env.image_user
    user.frame_duration, user.frame_start, user.frame_offset = {frames}, 1, -1
    user.use_cyclic = user.use_auto_refresh = True
    tree.links.new(env.outputs["Color"], tree.nodes["Background"].inputs["Color"])
    scene.world = world

    def camera(name, rot):
        data = bpy.data.cameras.new(name)
        data.lens = 20
        obj = bpy.data.objects.new(name, data)
        obj.rotation_euler = [math.radians(a) for a in rot]
        scene.collection.objects.link(obj)
        return obj

    cams = [camera("Front", (90, 0, -90)), camera("Left", (90, 0, 0))]
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.3, location=(2, 0, 0))
    bpy.ops.object.light_add(type="POINT", location=(1, 1, 1))
    bpy.context.view_layer.update()
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "scene.blend"))
    render.render_cameras(scene, cams, (1, {frames}), out / "plain-cameras")
    render.render_360(scene, (0, 0, 0), (1, {frames}), out / "plain-360", width=32)
    """
)


def write_loop(folder: Path) -> Path:
    """A 4-frame 64×32 loop (a PanoLoop output folder) whose frames differ in green."""
    (folder / "frames").mkdir(parents=True)
    xx, yy = np.arange(64)[None, :], np.arange(32)[:, None]
    for t in range(FRAMES):
        image = np.zeros((32, 64, 3), np.uint8)
        image[..., 0] = xx * 4 + 0 * yy
        image[..., 1] = 50 + 50 * t
        image[..., 2] = yy * 8 + 0 * xx
        write_image(frame_path(folder / "frames", t, np.uint8), image)
    write_manifest(folder, panorama_manifest(width=64, height=32, frames=FRAMES, fps=24, loop=True))
    return folder


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scene.blend and its single-machine renders (plain-cameras, plain-360)."""
    root = tmp_path_factory.mktemp("ray_render")
    loop = write_loop(root / "loop")
    script = SCENE_SCRIPT.format(repo=str(REPO), out=str(root), loop=str(loop), frames=FRAMES)
    (root / "scene.py").write_text(script)
    done = subprocess.run([sys.executable, str(root / "scene.py")], capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head() -> str:
    """A 2-CPU Ray head on this machine; its address. Stopped by its own pid (never
    ``ray stop``, which would stop every Ray on the machine)."""
    temp = tempfile.mkdtemp(prefix="rr", dir="/tmp")  # Unix socket paths must stay short
    port = free_port()
    log = Path(temp) / "head.log"
    command = [str(RAY), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
               "--include-dashboard=false", "--disable-usage-stats",
               f"--temp-dir={temp}"]  # fmt: skip
    with open(log, "w") as stream:
        head = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, env=ray_env())
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text() and time.monotonic() < deadline:
            assert head.poll() is None, log.read_text()[-2000:]
            time.sleep(0.5)
        assert "Ray runtime started" in log.read_text(), log.read_text()[-2000:]
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)  # the head's session and log


def spec_file(root: Path, name: str, **spec) -> Path:
    path = root / f"{name}.json"
    path.write_text(json.dumps({"scene": "Scene", "frame_range": [1, FRAMES], **spec}))
    return path


CAMERAS = {"kind": "cameras", "cameras": ["Front", "Left"]}
MONO_360 = {"kind": "360", "viewpoint": [0, 0, 0], "width": 32, "stereo": False}


def driver(scene: Path, spec: Path, out: Path, cluster: str, *extra: str) -> list[str]:
    """``python -m engine render-cluster`` argv for the bpy module's Python as Blender."""
    return [sys.executable, "-m", "engine", "render-cluster", str(scene / "scene.blend"),
            "--spec", str(spec), "--out", str(out), "--cluster", cluster,
            "--blender-python", sys.executable, "--cpus-per-task", "1", *extra]  # fmt: skip


def ray_env() -> dict[str, str]:
    """Token authentication off for the test cluster: whether ~/.ray/auth_token exists on
    this machine must not decide whether the drivers may join."""
    return dict(os.environ, RAY_AUTH_MODE="disabled")


def engine_env() -> dict[str, str]:
    return dict(ray_env(), PYTHONPATH=str(REPO))


def assert_same_frames(plain: Path, cluster: Path) -> int:
    """Every file of the single-machine render, pixel for pixel, and the same manifest."""
    files = sorted(p.relative_to(plain) for p in plain.rglob("*.png"))
    assert files and files == sorted(p.relative_to(cluster) for p in cluster.rglob("*.png"))
    for relative in files:
        a, b = read_image(plain / relative), read_image(cluster / relative)
        assert np.array_equal(a, b), (relative, np.abs(a.astype(int) - b).max())
    if (plain / "manifest.json").is_file():  # a render step's own folder (not multicam's copy)
        manifest = json.loads((cluster / "manifest.json").read_text())
        record = manifest.pop("cluster")  # how it was rendered: the one added field
        assert record["engine"] == "ray" and record["tasks"], record
        assert all(t["hostname"] == socket.gethostname() for t in record["tasks"]), record
        assert json.loads((plain / "manifest.json").read_text()) == manifest
    return len(files)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def task_processes() -> list[int]:
    """Pids of processes running a render task's Blender (their job in panoloop-task-*)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if entry.name.isdigit() and b"panoloop-task-" in cmdline:
            found.append(int(entry.name))
    return found


def wait_gone(timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (alive := task_processes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


# ---------------------------------------------------------------------------- tests


@pytest.mark.slow
def test_camera_frames_from_the_cluster_equal_the_single_machine_render(
    scene: Path, ray_head: str, tmp_path: Path
) -> None:
    """2 cameras × 4 frames as 4 tasks of 2 frames on 2 workers (1 Cycles thread each):
    the same pixels as one Blender rendering everything with all threads."""
    out = tmp_path / "renders"
    spec = spec_file(tmp_path, "cameras", **CAMERAS)
    argv = driver(scene, spec, out, ray_head, "--frames-per-task", "2")
    done = subprocess.run(argv, capture_output=True, text=True, env=engine_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(out)
    assert done.stderr.count("attempt 1: worker pid") == 4, done.stderr
    assert assert_same_frames(scene / "plain-cameras", out) == 2 * FRAMES
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_the_360_frames_still_match(
    scene: Path, ray_head: str, tmp_path: Path
) -> None:
    """The worker of the first 360° task is killed (SIGKILL) as it starts: the task runs
    again elsewhere, its Blender dies with the worker, and the frames are complete."""
    out = tmp_path / "mono"
    spec = spec_file(tmp_path, "mono", **MONO_360)
    log = tmp_path / "driver.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(driver(scene, spec, out, ray_head, "--frames-per-task", "2"),
                                stdout=subprocess.PIPE, stderr=stderr, text=True,
                                env=engine_env())  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while "task 0 (360° frames 1-2) attempt 1: worker pid" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        line = next(ln for ln in log.read_text().splitlines() if "task 0 " in ln)
        os.kill(int(line.split("worker pid ")[1].split()[0]), signal.SIGKILL)
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "task 0 (360° frames 1-2) failed" in text and "retrying once" in text, text
    assert "task 0 (360° frames 1-2) attempt 2: worker pid" in text
    assert assert_same_frames(scene / "plain-360", out) == FRAMES
    tasks = json.loads((out / "manifest.json").read_text())["cluster"]["tasks"]
    assert [t["attempts"] for t in tasks] == [2, 1], tasks
    assert leftovers(tmp_path) == [] and wait_gone(10) == []


@pytest.mark.slow
def test_cancel_ends_every_task_and_leaves_nothing(
    scene: Path, ray_head: str, tmp_path: Path
) -> None:
    """Through the add-on's worker protocol: ``cancel`` once both workers are rendering
    ends the job (``cancelled``, exit 130); no task's Blender survives; nothing written."""
    out = tmp_path / "renders"
    argv = driver(scene, spec_file(tmp_path, "cameras", **CAMERAS), out, ray_head)[4:]
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"command": "render-cluster", "argv": argv}))
    log = tmp_path / "worker.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "engine", "worker", "--job", str(job)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                text=True, env=engine_env())  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while len(task_processes()) < 2:  # both tasks' Blenders are running
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        started = time.monotonic()
        proc.stdin.write("cancel\n")
        proc.stdin.flush()
        events = [json.loads(line) for line in proc.stdout]
        assert proc.wait(timeout=60) == 130
        assert time.monotonic() - started < 30
    finally:
        if proc.poll() is None:
            proc.kill()
    assert events[-1]["event"] == "cancelled", events
    assert wait_gone(10) == []
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("address", "said"),
    [("127.0.0.1:9", "Connection refused within 3 s"), ("192.0.2.1:6379", "within 3 s")],
)
def test_an_unreachable_address_is_refused_within_seconds_naming_it(
    scene: Path, tmp_path: Path, address: str, said: str
) -> None:
    """A port nobody listens on, and an address nothing answers at (TEST-NET-1: no answer,
    or refused where the network says so at once)."""
    out = tmp_path / "renders"
    spec = spec_file(tmp_path, "cameras", **CAMERAS)
    started = time.monotonic()
    done = subprocess.run(driver(scene, spec, out, address), capture_output=True, text=True,
                          env=engine_env(), timeout=60)  # fmt: skip
    assert time.monotonic() - started < 20
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot reach the Ray cluster at {address}" in lines[0], lines
    assert said in lines[0]
    assert not out.exists() and leftovers(tmp_path) == []


ADDRESSES = [
    ("local", "local", "local"),
    ("auto", "auto", "auto"),
    ("head", "gcs", "head:6379"),
    ("10.0.0.9:7000", "gcs", "10.0.0.9:7000"),
    ("[::1]", "gcs", "[::1]:6379"),
    ("[fe80::1]:7000", "gcs", "[fe80::1]:7000"),
    ("ray://head", "client", "ray://head:10001"),
    (" ray://[::1]:9 ", "client", "ray://[::1]:9"),
]


@pytest.mark.parametrize(("text", "kind", "address"), ADDRESSES)
def test_every_address_form_with_its_default_port(text: str, kind: str, address: str) -> None:
    """The one parser of ``--cluster`` and ``--ray``: what Ray is given for each form."""
    parsed = parse_cluster(text, flag="--ray")
    assert (parsed.kind, parsed.ray_address, parsed.flag) == (kind, address, "--ray")


@pytest.mark.parametrize("text", ["::1", "head:0", "head:70000", "head:port", "head:²", "a b",
                                  "ray://", "", "[::1]x", "user@head:6379"])  # fmt: skip
def test_a_malformed_address_names_the_flag_and_the_value(text: str) -> None:
    with pytest.raises(BadInput) as refused:
        parse_cluster(text, flag="--cluster")
    assert str(refused.value).startswith(f"--cluster {text!r}")


def test_without_ray_the_command_says_how_to_install_it(scene: Path, tmp_path: Path) -> None:
    """``import ray`` fails (as in an engine set up without the cluster extra)."""
    out = tmp_path / "renders"
    argv = driver(scene, spec_file(tmp_path, "cameras", **CAMERAS), out, "local")[3:]
    code = (f"import sys; sys.modules['ray'] = None; from engine.cli import main; "
            f"sys.exit(main({argv!r}))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=engine_env(), timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "--cluster needs Ray, which is not installed" in line  # as --ray says it
    assert "pip install 'panoloop-engine[cluster]'" in line
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extension built from this checkout with the bpy module's own extension tool."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    tools = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not tools:
        pytest.skip("bpy ships no blender_ext.py extension tool")
    folder = tmp_path_factory.mktemp("extension")
    build = [sys.executable, str(tools[-1]), "build", "--source-dir", str(REPO)]
    done = subprocess.run([*build, "--output-dir", str(folder)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    (zip_path,) = folder.glob("panoloop-*.zip")
    return zip_path


def run_in_blender(script: str, extension: Path, tmp_path: Path, config: dict) -> dict:
    """Run :data:`SCRIPT_START` and then ``script`` in the bpy module's Python, in a fresh
    home (outputs under ``tmp_path/outputs``); what the script saw (its ``seen``)."""
    (tmp_path / "home").mkdir(parents=True)
    (tmp_path / "outputs").mkdir()
    script = f"{SCRIPT_START}{script}(tmp / 'seen.json').write_text(json.dumps(seen))\n"
    (tmp_path / "operators.py").write_text(script)
    config = {**config, "zip": str(extension), "tmp": str(tmp_path)}
    env = dict(ray_env(), HOME=str(tmp_path / "home"), PYTHONPATH="")
    done = subprocess.run([sys.executable, str(tmp_path / "operators.py"), json.dumps(config)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((tmp_path / "seen.json").read_text())


#: What both operator scripts start with: the extension installed and enabled, the
#: engine's Python = this one, the startup scene (cube, camera, light) rendering with
#: Cycles at a tiny size, the 4-frame loop on its World. ``seen`` collects the results.
SCRIPT_START = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import bpy

    config = json.loads(sys.argv[1])
    tmp = Path(config["tmp"])
    seen = {}
    seen["install"] = sorted(bpy.ops.extensions.package_install_files(
        filepath=config["zip"], repo="user_default", enable_on_install=True))
    prefs = bpy.context.preferences.addons["bl_ext.user_default.panoloop"].preferences
    prefs.engine_python = sys.executable
    prefs.output_dir = str(tmp / "outputs")
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 4
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = 32, 24
    seen["apply"] = sorted(bpy.ops.panoloop.apply_world(directory=config["loop"]))
    scene.world.cycles.sampling_method = "NONE"
    scene.frame_start, scene.frame_end = 1, 4
    """
)

OPERATOR_SCRIPT = textwrap.dedent(
    """
    seen["plain"] = sorted(bpy.ops.panoloop.render_multicam())
    prefs.render_cluster = config["head"]  # joining a running cluster, in place
    prefs.render_cluster_cpus = 1
    seen["cluster"] = sorted(bpy.ops.panoloop.render_multicam())
    # The UI's way (one runner job: render-cluster, then the engine) on a local cluster.
    prefs.render_cluster = "local"
    runner = sys.modules["bl_ext.user_default.panoloop.blender_addon.runner"]
    seen["async"] = sorted(bpy.ops.panoloop.render_multicam(run_mode="ASYNC"))
    job = runner.current()
    runner.wait(job, timeout=400)
    seen["async_state"] = [job.state, job.message]
    """
)


@pytest.mark.slow
def test_render_all_cameras_on_a_render_cluster_gives_the_same_frames(
    scene: Path, ray_head: str, extension_zip: Path, tmp_path: Path
) -> None:
    """The built extension in the bpy module: *Render All Cameras* with Render Cluster
    set to the running head's address (run in place, background mode) and to ``local``
    (the engine's Python starts Ray with this machine's CPUs; as the UI's runner job),
    1 CPU per task, writes the same camera frames, pixel for pixel, as without it, and
    the same multicam folder layout."""
    config = {"loop": str(scene / "loop"), "head": ray_head}
    seen = run_in_blender(OPERATOR_SCRIPT, extension_zip, tmp_path, config)
    state = seen.pop("async_state")
    assert state[0] == "DONE", state
    assert all(v == ["FINISHED"] for v in seen.values()), seen
    plain, *clustered = sorted((tmp_path / "outputs").iterdir())  # in the order they ran
    assert len(clustered) == 2
    names = sorted(p.relative_to(plain) for p in plain.rglob("*") if "renders" not in p.parts)
    assert json.loads((plain / "manifest.json").read_text())["render_cluster"] is None
    # In place (background mode) on the head, then the UI's runner job on a local cluster.
    for cluster, kind in zip(clustered, ("gcs", "local"), strict=True):
        assert assert_same_frames(plain / "renders", cluster / "renders") == 4
        assert names == sorted(
            p.relative_to(cluster) for p in cluster.rglob("*") if "renders" not in p.parts
        )
        record = json.loads((cluster / "manifest.json").read_text())["render_cluster"]
        assert (record["engine"], record["address"]) == ("ray", kind), record
    assert leftovers(tmp_path / "outputs") == []


EXPORT_VR_SCRIPT = textwrap.dedent(
    """
    packages = []
    for cluster in ("", "local"):  # this machine, then a local Ray cluster (1 CPU a task)
        prefs.render_cluster, prefs.render_cluster_cpus = cluster, 1
        seen[cluster or "plain"] = sorted(bpy.ops.panoloop.export_vr(mono_360=True, width_360=64))
        packages.append(scene.panoloop.last_vr_package)
    seen["packages"] = packages
    """
)


@pytest.mark.slow
def test_export_vr_on_a_render_cluster_gives_the_same_360_frames(
    extension_zip: Path, tmp_path: Path
) -> None:
    """*Export for VR* with Scene 360° (the built extension in the bpy module, background
    mode): with Render Cluster ``local`` its 360° renders run as ``render-cluster`` tasks
    on a Ray cluster started for them, and the package holds the same frames, pixel for
    pixel, as the export on this machine; its manifest says where they were rendered."""
    loop = write_loop(tmp_path / "loop")
    blender = tmp_path / "blender"
    seen = run_in_blender(EXPORT_VR_SCRIPT, extension_zip, blender, {"loop": str(loop)})
    plain, cluster = (Path(p) for p in seen.pop("packages"))
    assert all(v == ["FINISHED"] for v in seen.values()), seen
    assert plain != cluster and plain.parent == cluster.parent == blender / "outputs"
    frames = "scene_360/frames"
    assert assert_same_frames(plain / frames, cluster / frames) == 4
    mono = "scene_360/scene_360.mp4"
    for a, b in zip(read_mp4(plain / mono)[0], read_mp4(cluster / mono)[0], strict=True):
        assert np.array_equal(a, b)
    assert sorted(p.relative_to(plain) for p in plain.rglob("*")) == sorted(
        p.relative_to(cluster) for p in cluster.rglob("*")
    )
    here, there = (json.loads((p / "manifest.json").read_text()) for p in (plain, cluster))
    assert here.pop("render_cluster") == {"scene_360": None}
    record = there.pop("render_cluster")["scene_360"]
    assert (record["engine"], record["address"]) == ("ray", "local"), record
    assert record["tasks"] and all(t["task"].startswith("360° frames") for t in record["tasks"])
    assert all(t["hostname"] == socket.gethostname() for t in record["tasks"]), record
    assert {**here, "timings": None} == {**there, "timings": None}
    assert leftovers(plain.parent) == []
