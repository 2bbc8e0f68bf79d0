"""Real Blender renders (bpy, Cycles on the CPU, tiny sizes): every camera in sync with the
animated World, mono and stereo 360° of the scene, and refused scenes.

The bpy work runs in a subprocess (``.venv/bin/python`` with the bpy module), so Blender's
global state stays out of the test process. The World plays a 4-frame loop whose frames
carry their number in the green channel; frame N of every camera must show loop frame N.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from engine.cameras import load_cameras
from engine.media import (
    frame_path,
    list_frames,
    panorama_manifest,
    read_image,
    write_image,
    write_manifest,
)
from engine.projection import equirect_to_camera

REPO = Path(__file__).resolve().parents[1]
LOOP_FRAMES = 4
TAG = (40, 90, 140, 190)  # green value of loop frame 0..3

SCENE_SCRIPT = textwrap.dedent(
    """
    import json, math, sys
    from pathlib import Path
    import bpy
    sys.path[:0] = [{repo!r}, str(Path({repo!r}) / "tests")]
    from blender_addon import render
    from blender_addon.scene_io import write_cameras_json
    from blender_reference_scene import render_one_centred_sample

    loop, out = Path({loop!r}), Path({out!r})
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    render_one_centred_sample(scene)
    scene.view_settings.view_transform = "Standard"
    scene.render.resolution_x, scene.render.resolution_y = 64, 48
    scene.render.resolution_percentage = 100
    scene.frame_start, scene.frame_end = 1, {frames}

    # The World plays the loop as an image sequence, as blender_addon.world applies it.
    world = bpy.data.worlds.new("W")
    world.use_nodes = True
    # No importance map: Cycles rebuilds it for every frame of an animated World, which
    # costs seconds per render at its default resolution.
    world.cycles.sampling_method = "NONE"
    tree = world.node_tree
    env = tree.nodes.new("ShaderNodeTexEnvironment")
    env.name = render.contract.ENV_NODE_NAME
    env.interpolation = "Linear"
    env.image = bpy.data.images.load(str(loop / "frames" / "frame_000000.png"))
    env.image.source = "SEQUENCE"
    user = env.image_user
    user.frame_duration, user.frame_start, user.frame_offset = {frames}, 1, -1
    user.use_cyclic = user.use_auto_refresh = True
    tree.links.new(env.outputs["Color"], tree.nodes["Background"].inputs["Color"])
    scene.world = world

    def camera(name, rot, loc=(0, 0, 0), kind="PERSP"):
        data = bpy.data.cameras.new(name)
        data.type = kind
        data.lens = 20
        obj = bpy.data.objects.new(name, data)
        obj.rotation_euler = [math.radians(a) for a in rot]
        obj.location = loc
        scene.collection.objects.link(obj)
        return obj

    cams = [camera("Front", (90, 0, -90)), camera("Left", (90, 0, 0)),
            camera("Up", (0, 0, 0))]
    # A red ball 0.6 m from the origin along -X (the Back side, seen by no camera): only
    # the 360° renders see it, with parallax in stereo.
    mesh = bpy.data.meshes.new("ball")
    ball = bpy.data.objects.new("ball", mesh)
    import bmesh
    bm = bmesh.new(); bmesh.ops.create_uvsphere(bm, u_segments=16, v_segments=8, radius=0.12)
    bm.to_mesh(mesh); bm.free()
    mat = bpy.data.materials.new("red"); mat.use_nodes = True
    emit = mat.node_tree.nodes.new("ShaderNodeEmission")
    emit.inputs["Color"].default_value = (1, 0, 0, 1)
    out_node = mat.node_tree.nodes["Material Output"]
    mat.node_tree.links.new(emit.outputs[0], out_node.inputs["Surface"])
    mesh.materials.append(mat)
    ball.location = (-0.6, 0, 0)
    scene.collection.objects.link(ball)

    bpy.context.view_layer.update()  # matrix_world follows rotation_euler only after this
    write_cameras_json(cams, scene, out / "cameras.json")
    results = {{}}
    results["cameras"] = str(render.render_cameras(scene, cams, (1, {frames}), out / "renders"))
    results["mono"] = str(render.render_360(scene, (0, 0, 0), (1, {frames}), out / "mono",
                                            width=64))
    results["stereo"] = str(render.render_360(scene, (0, 0, 0), (1, {frames}), out / "stereo",
                                              width=64, stereo=True, interocular=0.3))
    assert scene.camera is None and scene.render.resolution_x == 64, "settings restored"
    assert not scene.render.use_multiview
    assert "PanoLoop 360" not in bpy.data.objects, "temporary camera removed"

    refused = {{}}
    ortho = camera("Ortho", (90, 0, 0), kind="ORTHO")
    attempts = {{
        "ortho": lambda: render.render_cameras(scene, [ortho], (1, {frames}), out / "x"),
        "none": lambda: render.render_cameras(scene, [], (1, {frames}), out / "x"),
        "range": lambda: render.render_cameras(scene, cams, (1, 10), out / "x"),
        "exists": lambda: render.render_cameras(scene, cams, (1, {frames}), out / "renders"),
        "stereo_range": lambda: render.render_360(scene, (0, 0, 0), (2, 3), out / "x"),
    }}
    for key, attempt in attempts.items():
        try:
            attempt()
        except render.contract.PanoLoopError as exc:
            refused[key] = str(exc)
    results["refused"] = refused
    (out / "results.json").write_text(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def blender_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("blender_multicam")
    loop = root / "loop"
    (loop / "frames").mkdir(parents=True)
    xx = np.arange(128)[None, :]
    yy = np.arange(64)[:, None]
    for t in range(LOOP_FRAMES):
        image = np.zeros((64, 128, 3), np.uint8)
        image[..., 0] = (np.sin(xx / 128 * 2 * np.pi) + 1) * 60 + 0 * yy
        image[..., 1] = TAG[t]
        image[..., 2] = 30 + yy * 3 + 0 * xx
        write_image(frame_path(loop / "frames", t, np.uint8), image)
    write_manifest(loop, panorama_manifest(width=128, height=64, frames=LOOP_FRAMES, fps=24,
                                           loop=True))  # fmt: skip
    out = root / "out"
    out.mkdir()
    script = SCENE_SCRIPT.format(repo=str(REPO), loop=str(loop), out=str(out), frames=LOOP_FRAMES)
    (root / "scene.py").write_text(script)
    result = subprocess.run(
        [sys.executable, str(root / "scene.py")],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_every_camera_renders_the_same_frame_numbers_in_sync(blender_out: Path) -> None:
    renders = blender_out / "renders"
    manifest = json.loads((renders / "manifest.json").read_text())
    assert manifest["frame_range"] == [1, LOOP_FRAMES] and manifest["engine"] == "CYCLES"
    names = [c["name"] for c in manifest["cameras"]]
    assert names == ["Front", "Left", "Up"]
    for name in names:
        frames = list_frames(renders / name)
        assert [p.name for p in frames] == [f"frame_{n:06d}.png" for n in range(LOOP_FRAMES)]
        for n, path in enumerate(frames):
            green = read_image(path)[..., 1].astype(float).mean()
            assert abs(green - TAG[n]) < 6, (name, n, green)


def test_blender_renders_agree_with_the_engine_reprojection(blender_out: Path) -> None:
    """Cycles through each camera ≈ our reprojection of the same loop frame."""
    loop = blender_out.parent / "loop" / "frames"
    cameras = load_cameras(blender_out / "cameras.json")
    for cam in cameras:
        for n in range(LOOP_FRAMES):
            expected = equirect_to_camera(read_image(loop / f"frame_{n:06d}.png"), cam)
            got = read_image(blender_out / "renders" / cam.name / f"frame_{n:06d}.png")
            error = np.abs(got.astype(float) - expected).mean()
            assert error < 4, (cam.name, n, error)


def test_mono_360_is_a_panorama_folder_in_sync_with_the_loop(blender_out: Path) -> None:
    mono = blender_out / "mono"
    manifest = json.loads((mono / "manifest.json").read_text())
    assert manifest["stereo"] == "mono" and (manifest["width"], manifest["height"]) == (64, 32)
    frames = list_frames(mono / "frames")
    assert len(frames) == LOOP_FRAMES
    for n, path in enumerate(frames):
        image = read_image(path)
        assert image.shape == (32, 64, 3)
        # The red ball sits at Blender -X: the wrap seam (left and right edges, middle row).
        seam = np.concatenate([image[15:17, :1], image[15:17, -1:]], axis=1)
        assert seam[..., 0].min() > 200 and seam[..., 1].max() < 60, seam
        centre = image[8:24, 24:40]  # +X: only the World, tagged with the loop frame
        assert abs(centre[..., 1].astype(float).mean() - TAG[n]) < 6


def test_stereo_360_is_top_bottom_with_the_left_eye_on_top(blender_out: Path) -> None:
    stereo = blender_out / "stereo"
    manifest = json.loads((stereo / "manifest.json").read_text())
    assert manifest["stereo"] == "top-bottom" and manifest["stereo_layout"] == "left eye on top"
    image = read_image(list_frames(stereo / "frames")[0]).astype(float)
    assert image.shape == (64, 64, 3)

    def ball_column(eye: np.ndarray) -> float:
        """Where the red ball (at -X, the seam) is, as a signed column offset from the seam."""
        red = (eye[..., 0] > 150) & (eye[..., 1] < 80)
        cols = np.nonzero(red)[1].astype(float)
        assert cols.size > 0
        return float(np.mean(np.where(cols < 32, cols + 0.5, cols + 0.5 - 64)))

    top, bottom = ball_column(image[:32]), ball_column(image[32:])
    # Facing -X, the left eye stands to the -Y side and sees the ball towards +Y, which in
    # Blender's equirect (u = 0.5 - atan2(y, x) / 2pi) lies just right of column 0 (a
    # positive offset); the right eye sees it at the right edge (a negative one).
    assert top > bottom + 1, (top, bottom)


def test_refused_scenes_name_the_value_and_write_nothing(blender_out: Path) -> None:
    refused = results(blender_out)["refused"]
    assert "camera 'Ortho' is ORTHO" in refused["ortho"]
    assert "no cameras chosen" in refused["none"]
    assert "frame range 1-10 is 10 frames but the loop has 4" in refused["range"]
    assert "already exists" in refused["exists"]
    assert "frame range 2-3 is 2 frames" in refused["stereo_range"]
    leftovers = [p.name for p in blender_out.iterdir() if p.name.startswith(".")]
    assert leftovers == [] and not (blender_out / "x").exists()


def test_engine_multicam_takes_the_blender_renders_in(
    blender_out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main
    from engine.media import read_mp4

    loop = blender_out.parent / "loop"
    argv = ["multicam", "--panorama", str(loop), "--cameras", str(blender_out / "cameras.json")]
    out = blender_out / "multicam"
    assert main([*argv, "--renders", str(blender_out / "renders"), "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    for cam in manifest["cameras"]:
        assert len(list_frames(out / cam["render_frames"])) == LOOP_FRAMES
        assert len(read_mp4(out / cam["render_video"])[0]) == LOOP_FRAMES
        assert len(read_mp4(out / cam["video"])[0]) == LOOP_FRAMES
    sheet = read_image(out / "contact_sheet.png")
    from engine.multicam.sheet import SHEET_HEADER_H

    assert sheet.shape[0] == SHEET_HEADER_H + 6 * 180 + 5 * 4  # 3 cameras × 2 rows
    # A render whose loop length differs is refused, naming the camera.
    assert main([*argv, "--renders", str(blender_out / "mono"), "--out", str(out) + "2"]) == 2
    assert "not 'blender_renders'" in capsys.readouterr().err


OPERATOR_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import bpy

    config = json.loads(sys.argv[1])
    tmp = Path(config["tmp"])
    seen = {{}}
    seen["install"] = sorted(bpy.ops.extensions.package_install_files(
        filepath=config["zip"], repo="user_default", enable_on_install=True))
    prefs = bpy.context.preferences.addons["bl_ext.user_default.panoloop"].preferences
    prefs.engine_python = sys.executable
    prefs.output_dir = str(tmp / "outputs")
    scene = bpy.context.scene
    for obj in [o for o in scene.objects if o.type == "LIGHT"]:
        bpy.data.objects.remove(obj)
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = 32, 24
    seen["apply"] = sorted(bpy.ops.panoloop.apply_world(directory=config["loop"]))
    scene.world.cycles.sampling_method = "NONE"
    # The World's rotation drives PanoLoop's Mapping node; every plan passes it on.
    import math
    scene.panoloop.world_rotation = math.radians(30)
    mapping = scene.world.node_tree.nodes["PanoLoop Rotation"]
    seen["mapping_z"] = math.degrees(mapping.inputs["Rotation"].default_value[2])
    seen["mapping_feeds_env"] = (
        scene.world.node_tree.nodes["PanoLoop Environment"].inputs["Vector"].links[0].from_node
        == mapping)
    scene.frame_start, scene.frame_end = 1, {frames}

    def call(op, **kw):
        try:
            return sorted(op(**kw))
        except RuntimeError as exc:
            return str(exc)

    seen["multicam"] = call(bpy.ops.panoloop.render_multicam)
    # The UI path: one runner job runs the plan's processes, a background Blender for the
    # renders (here the bpy module's Python runs background.py), then the engine worker.
    runner = sys.modules["bl_ext.user_default.panoloop.blender_addon.runner"]
    seen["async"] = call(bpy.ops.panoloop.render_multicam, run_mode="ASYNC")
    labels = []
    while runner.current() is not None and runner.is_busy():
        job = runner.current()
        labels.append(job.label)
        runner.wait(job, timeout=240)
        seen.setdefault("async_states", []).append([job.state, job.message])
    seen["async_labels"] = labels
    seen["async_vr"] = call(bpy.ops.panoloop.export_vr, run_mode="ASYNC", stereo_360=True,
                            width_360=32)
    while runner.current() is not None and runner.is_busy():
        job = runner.current()
        runner.wait(job, timeout=240)
        seen["async_vr_state"] = [job.label, job.state, job.message, str(job.result)]
    seen["export_vr"] = call(bpy.ops.panoloop.export_vr)  # blocking; 360s: the async run
    scene.frame_end = {frames} + 5
    seen["bad_range"] = call(bpy.ops.panoloop.render_multicam)
    scene.frame_end = {frames}
    scene.camera.data.type = "ORTHO"
    seen["ortho"] = call(bpy.ops.panoloop.render_multicam)
    (tmp / "seen.json").write_text(json.dumps(seen))
    """
)


def test_operators_run_blocking_in_background_mode(blender_out: Path, tmp_path: Path) -> None:
    """The built extension, installed in a temporary HOME: both operators end to end."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("bpy")
    tools = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not tools:
        pytest.skip("bpy ships no blender_ext.py extension tool")
    build = [sys.executable, str(tools[-1]), "build", "--source-dir", str(REPO)]
    done = subprocess.run([*build, "--output-dir", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    (zip_path,) = tmp_path.glob("panoloop-*.zip")
    (tmp_path / "home").mkdir()
    (tmp_path / "outputs").mkdir()
    script = tmp_path / "operators.py"
    script.write_text(OPERATOR_SCRIPT.format(frames=LOOP_FRAMES))
    config = {"zip": str(zip_path), "tmp": str(tmp_path), "loop": str(blender_out.parent / "loop")}
    env = dict(os.environ, HOME=str(tmp_path / "home"), PYTHONPATH="")
    done = subprocess.run(
        [sys.executable, str(script), json.dumps(config)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["install"] == ["FINISHED"] and seen["apply"] == ["FINISHED"]
    assert abs(seen["mapping_z"] - 30) < 1e-4 and seen["mapping_feeds_env"]
    assert seen["multicam"] == ["FINISHED"] and seen["export_vr"] == ["FINISHED"]
    assert "frame range 1-9 is 9 frames but the loop has 4" in seen["bad_range"]
    # One camera-scope rule: a non-perspective camera is left out, and named.
    assert "no perspective cameras in the PanoLoop camera scope" in seen["ortho"]
    assert "left out, not perspective: 'Camera'" in seen["ortho"]
    outputs = sorted((tmp_path / "outputs").iterdir())
    assert seen["async"] == ["FINISHED"]
    assert seen["async_labels"] == ["Render 1 camera"]
    assert [state for state, _ in seen["async_states"]] == ["DONE"], seen
    kinds = [p.name.split("-")[1] for p in outputs]
    assert kinds == ["multicam", "multicam", "vr", "vr"], outputs
    multicam, async_multicam, async_vr, vr = outputs  # in the order they ran
    label, state, message, result = seen["async_vr_state"]
    assert (label, state, result) == ("Render 360° and export for VR", "DONE", str(async_vr))
    assert (async_vr / "scene_360_TB" / "scene_360_TB.mp4").is_file()
    assert (async_vr / "panorama" / "webxr" / "scene.glb").is_file()
    assert json.loads((async_vr / "manifest.json").read_text())["kind"] == "vr_package"
    assert len(list((async_multicam / "renders" / "Camera").glob("*.png"))) == LOOP_FRAMES
    assert not [p for p in (tmp_path / "outputs").iterdir() if p.name.startswith(".")]
    assert len(list((multicam / "renders" / "Camera").glob("*.png"))) == LOOP_FRAMES
    assert (multicam / "contact_sheet.png").is_file()
    for folder in (multicam, async_multicam, vr, async_vr):  # the World's rotation, passed on
        assert abs(json.loads((folder / "manifest.json").read_text())["yaw_degrees"] - 30) < 1e-4
    assert (vr / "panorama" / "webxr" / "index.html").is_file()
    assert (vr / "scene.glb").is_file() and not (vr / "scene_360_TB").exists()
