"""The Blender side of VR export (bpy in a subprocess, Cycles on the CPU, tiny sizes):
glTF through Blender's exporter, the World's loop exported with spherical metadata and a
WebXR package, mono and top-bottom stereo 360° of the scene, multicam through the engine,
and the render job script's JSON-line protocol."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from engine.export.spherical import read_spherical
from engine.media import frame_path, panorama_manifest, read_mp4, write_image, write_manifest

REPO = Path(__file__).resolve().parents[1]
FRAMES = 3

SCRIPT = textwrap.dedent(
    """
    import json, math, sys
    from pathlib import Path
    import bpy
    sys.path.insert(0, {repo!r})
    from blender_addon import plans, render

    loop, out = Path({loop!r}), Path({out!r})
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = 32, 24
    scene.render.fps = 8
    scene.frame_start, scene.frame_end = 1, {frames}
    world = bpy.data.worlds.new("W")
    world.use_nodes = True
    world.cycles.sampling_method = "NONE"
    env = world.node_tree.nodes.new("ShaderNodeTexEnvironment")
    env.name = render.contract.ENV_NODE_NAME
    env.image = bpy.data.images.load(str(loop / "frames" / "frame_000000.png"))
    env.image.source = "SEQUENCE"
    env.image_user.frame_duration, env.image_user.frame_offset = {frames}, -1
    env.image_user.use_cyclic = True
    world.node_tree.links.new(env.outputs["Color"],
                              world.node_tree.nodes["Background"].inputs["Color"])
    scene.world = world
    bpy.ops.mesh.primitive_cube_add(size=0.5, location=(1.0, 2.0, 3.0))
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    cam.rotation_euler = (math.radians(90), 0, math.radians(-90))
    scene.collection.objects.link(cam)
    scene.camera = cam

    # The plans run in place, as in background mode (the library API, add-on not enabled).
    vr = plans.run_in_place(plans.vr_export_plan(
        scene, out / "vr", viewpoint=(0, 0, 0), mono_360_width=32, stereo_360_width=32,
        panorama=loop, yaw_degrees=0.0))
    mc = plans.run_in_place(plans.multicam_plan(
        scene, out / "mc", panorama=loop, cameras=[cam], yaw_degrees=0.0))
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "scene.blend"))
    (out / "done.json").write_text(json.dumps({{"vr": str(vr), "mc": str(mc)}}))
    """
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vr_blender")
    loop = root / "loop"
    (loop / "frames").mkdir(parents=True)
    for t in range(FRAMES):
        image = np.zeros((32, 64, 3), np.uint8)
        image[..., 1] = 60 + 60 * t
        image[..., 2] = np.arange(64)[None, :] * 3
        write_image(frame_path(loop / "frames", t, np.uint8), image)
    write_manifest(loop, panorama_manifest(width=64, height=32, frames=FRAMES, fps=8, loop=True))
    out = root / "out"
    out.mkdir()
    script = SCRIPT.format(repo=str(REPO), loop=str(loop), out=str(out), frames=FRAMES)
    (root / "script.py").write_text(script)
    result = subprocess.run(
        [sys.executable, str(root / "script.py")],
        capture_output=True,
        text=True,
        timeout=400,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def read_glb_json(path: Path) -> dict:
    data = path.read_bytes()
    magic, version, _length = struct.unpack_from("<4sII", data)
    assert magic == b"glTF" and version == 2
    chunk_length, chunk_type = struct.unpack_from("<I4s", data, 12)
    assert chunk_type == b"JSON"
    return json.loads(data[20 : 20 + chunk_length])


def test_gltf_comes_from_blenders_exporter_with_y_up(exported: Path) -> None:
    gltf = read_glb_json(exported / "vr" / "scene.glb")
    assert "Khronos glTF Blender I/O" in gltf["asset"]["generator"]
    nodes = {n["name"]: n for n in gltf["nodes"]}
    # Blender (1, 2, 3) is glTF (x, z, -y) = (1, 3, -2): +Y up, as the viewer expects.
    np.testing.assert_allclose(nodes["Cube"]["translation"], [1.0, 3.0, -2.0], atol=1e-6)
    assert "Cam" in nodes and gltf.get("cameras")


def test_world_loop_is_exported_with_metadata_and_a_webxr_package(exported: Path) -> None:
    panorama = exported / "vr" / "panorama"
    video = next(panorama.glob("*_360.mp4"))
    assert read_spherical(video).projection == "equirectangular"
    webxr = panorama / "webxr"
    assert (webxr / "index.html").is_file() and (webxr / "scene.glb").is_file()
    index = json.loads((webxr / "package.json").read_text())
    assert index["scene"] == "scene.glb" and index["viewpoint_blender"] == [0.0, 0.0, 0.0]


def test_scene_360_mono_and_top_bottom_stereo_are_tagged(exported: Path) -> None:
    mono = exported / "vr" / "scene_360" / "scene_360.mp4"
    stereo = exported / "vr" / "scene_360_TB" / "scene_360_TB.mp4"
    assert read_spherical(mono).stereo_mode == "mono"
    info = read_spherical(stereo)
    assert info.stereo_mode == "top-bottom" and info.v1["StereoMode"] == "top-bottom"
    mono_frames, fps = read_mp4(mono)
    stereo_frames, _ = read_mp4(stereo)
    assert len(mono_frames) == len(stereo_frames) == FRAMES and fps == 8
    assert mono_frames[0].shape == (16, 32, 3) and stereo_frames[0].shape == (32, 32, 3)
    manifest = json.loads((exported / "vr" / "manifest.json").read_text())
    assert manifest["scene_360_stereo"] == "scene_360_TB"
    # Rendered here, not on a Render Cluster (test_ray_render.py has the cluster's record).
    assert manifest["render_cluster"] == {"scene_360": None, "scene_360_TB": None}


def test_multicam_has_render_and_reprojection_clips(exported: Path) -> None:
    manifest = json.loads((exported / "mc" / "manifest.json").read_text())
    assert manifest["blender_frame_range"] == [1, FRAMES]
    cam = manifest["cameras"][0]
    assert len(read_mp4(exported / "mc" / cam["render_video"])[0]) == FRAMES
    assert len(read_mp4(exported / "mc" / cam["video"])[0]) == FRAMES
    assert (exported / "mc" / "contact_sheet.png").is_file()
    assert not [p for p in exported.iterdir() if p.name.startswith(".")], "no work left behind"


def test_render_job_script_speaks_the_worker_protocol(exported: Path, tmp_path: Path) -> None:
    """What the operator runs in a background Blender: JSON lines, done, same outputs."""
    job = {
        "blend": str(exported / "scene.blend"),
        "scene": "Scene",
        "kind": "cameras",
        "cameras": ["Cam"],
        "frame_range": [1, FRAMES],
        "out": str(tmp_path / "renders"),
    }
    (tmp_path / "job.json").write_text(json.dumps(job))
    command = [
        sys.executable,
        str(REPO / "blender_addon" / "background.py"),
        str(tmp_path / "job.json"),
    ]

    def run(cancel_first: bool) -> tuple[int, list[dict]]:
        proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        if cancel_first:
            proc.stdin.write("cancel\n")
            proc.stdin.flush()
        events = []
        for line in proc.stdout:  # stdin stays open (no cancel) until the final event
            if line.startswith("{"):
                events.append(json.loads(line))
                if events[-1]["event"] in ("done", "cancelled", "error"):
                    break
        proc.stdin.close()
        return proc.wait(timeout=200), events

    code, events = run(cancel_first=False)
    assert code == 0 and events[-1] == {"event": "done", "output": job["out"]}
    steps = [e["step"] for e in events if e["event"] == "progress"]
    assert steps == list(range(1, FRAMES + 1))
    assert len(list((tmp_path / "renders" / "Cam").glob("frame_*.png"))) == FRAMES

    job["out"] = str(tmp_path / "cancelled")
    (tmp_path / "job.json").write_text(json.dumps(job))
    code, events = run(cancel_first=True)
    assert code == 130 and events[-1]["event"] == "cancelled"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.json", "renders"]
