"""The WebXR package in a real browser: headless Chromium loads index.html from 127.0.0.1,
the muted looping video plays, and the rendered view matches the panorama seen along
Blender +X (checked pixel by pixel against our own reprojection, not just "a file exists").

Needs Debian's ``chromium`` (``apt-get install -y chromium``); skips with that reason
when it is absent.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine.cameras import BlenderCamera
from engine.cli import main
from engine.media import (
    encode_mp4,
    frame_path,
    panorama_manifest,
    write_image,
    write_manifest,
)
from engine.projection import equirect_to_camera

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not installed (Debian: apt-get install -y chromium)",
)
VIEW_W, VIEW_H = 320, 240
VIEWER_FOV = 75.0  # the viewer's vertical field of view (engine/export/webxr.py default)
BROWSER_TIMEOUT_S = 150  # generous: CI machines and shared ones can be slow

#: Loaded in the same origin as the package; reads the live three.js renderer once the
#: video has played a while and posts the pixels and the video's state back.
PROBE_HTML = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" src="/index.html" style="border:0;width:__W__px;height:__H__px"></iframe>
<script>
const report = (o) => fetch('/__report', {method: 'POST', body: JSON.stringify(o)});
const start = performance.now();
function capture(p) {
  // On a presented video frame: upload it, render, read the drawing buffer at once
  // (toDataURL may see an already-cleared buffer).
  const tex = p.world.children[0].material.map;
  tex.needsUpdate = true;
  const gl = p.renderer.getContext();
  p.renderer.render(p.scene, p.camera);
  const px = new Uint8Array(gl.drawingBufferWidth * gl.drawingBufferHeight * 4);
  gl.readPixels(0, 0, gl.drawingBufferWidth, gl.drawingBufferHeight, gl.RGBA,
                gl.UNSIGNED_BYTE, px);
  let bin = '';
  for (let i = 0; i < px.length; i += 8192) {
    bin += String.fromCharCode.apply(null, px.subarray(i, i + 8192));
  }
  report({ok: true, rgba: btoa(bin), w: gl.drawingBufferWidth, h: gl.drawingBufferHeight,
          time: p.video.currentTime, paused: p.video.paused, muted: p.video.muted,
          loop: p.video.loop, version: p.version, scene: p.state});
}
function poll() {
  const w = document.getElementById('f').contentWindow;
  const p = w && w.panoloop;
  const sceneReady = p && (!p.config.scene || p.state.sceneLoaded || p.state.sceneError);
  if (p && sceneReady && p.video.currentTime > 0.3 && p.video.readyState >= 2) {
    p.video.requestVideoFrameCallback(() => capture(p));
  } else if (performance.now() - start > 90000) {
    const d = w && w.document;
    report({ok: false, state: p ? [p.video.currentTime, p.video.readyState,
            p.video.error && p.video.error.code] : 'viewer did not start',
            page: d ? [w.location.href, d.readyState, d.querySelectorAll('canvas').length,
                       w.performance.getEntriesByType('resource').map(
                         (e) => [e.name.split('/').pop(), Math.round(e.duration)])] : null});
  } else {
    setTimeout(poll, 100);
  }
}
window.onerror = (m) => report({ok: false, error: String(m)});
poll();
</script></body></html>""".replace("__W__", str(VIEW_W)).replace("__H__", str(VIEW_H))


def sector_panorama(width: int) -> np.ndarray:
    """A 2:1 panorama whose colour says where it faces: 8 longitude sectors × 4 bands,
    slightly smoothed (video compression keeps it) and asymmetric (a mirror shows)."""
    import cv2

    height = width // 2
    rng = np.random.default_rng(0)
    palette = rng.integers(20, 236, size=(4, 8, 3)).astype(np.uint8)
    rows = np.arange(height) * 4 // height
    cols = np.arange(width) * 8 // width
    image = palette[rows[:, None], cols[None, :]]
    return cv2.GaussianBlur(image, (0, 0), width / 256)


#: Where the viewer stands (Blender coordinates) and a marker 2 m ahead along Blender +X.
VIEWPOINT = (0.0, 0.0, 1.0)
MARKER_HALF_PX = 20  # the marker covers about ±11 px around the view centre


def marker_glb(path: Path) -> Path:
    """A binary glTF holding one unlit magenta triangle around Blender (2, 0, 1), which is
    glTF (2, 1, 0) (Blender's exporter: x, z, −y), i.e. straight ahead of the viewpoint."""
    positions = np.array([[2, 0.8, -0.2], [2, 0.8, 0.2], [2, 1.3, 0.0]], np.float32)
    binary = positions.tobytes()
    gltf = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "marker"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "material": 0}]}],
        "materials": [
            {
                "pbrMetallicRoughness": {"baseColorFactor": [1, 0, 1, 1]},
                "doubleSided": True,
                "extensions": {"KHR_materials_unlit": {}},
            }
        ],
        "extensionsUsed": ["KHR_materials_unlit"],
        "accessors": [
            {
                "bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                "min": positions.min(0).tolist(), "max": positions.max(0).tolist(),
            }
        ],
        "bufferViews": [{"buffer": 0, "byteLength": len(binary)}],
        "buffers": [{"byteLength": len(binary)}],
    }  # fmt: skip
    text = json.dumps(gltf).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    chunks = struct.pack("<I4s", len(text), b"JSON") + text
    chunks += struct.pack("<I4s", len(binary), b"BIN\0") + binary
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks)
    return path


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    root = tmp_path_factory.mktemp("webxr")
    pano = root / "sectors"
    (pano / "frames").mkdir(parents=True)
    image = sector_panorama(512)
    frames = 16
    for index in range(frames):
        write_image(frame_path(pano / "frames", index, np.uint8), image)
    encode_mp4([image] * frames, pano / "panorama.mp4", 8)
    write_manifest(
        pano,
        panorama_manifest(width=512, height=256, frames=frames, fps=8, loop=True, source="test"),
    )
    out = root / "export"
    glb = marker_glb(root / "marker.glb")
    viewpoint = [str(v) for v in VIEWPOINT]
    argv = ["export", str(pano), "--out", str(out), "--webxr", "--gltf", str(glb)]
    assert main([*argv, "--viewpoint", *viewpoint]) == 0
    return out / "webxr", image


class _Server(http.server.ThreadingHTTPServer):
    reports: list[dict]


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/__probe.html":
            body = PROBE_HTML.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.server.reports.append(json.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()


def run_browser(folder: Path, profile: Path) -> dict:
    """Serve ``folder`` on 127.0.0.1, open the probe in headless Chromium, return its report."""
    handler = functools.partial(_Handler, directory=str(folder))
    server = _Server(("127.0.0.1", 0), handler)
    server.reports = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/__probe.html"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={profile}",
        # WebGL without a GPU: SwiftShader, which newer Chromium only uses when asked.
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        f"--window-size={VIEW_W},{VIEW_H}",
        url,
    ]
    browser = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + BROWSER_TIMEOUT_S
        while not server.reports and time.monotonic() < deadline and browser.poll() is None:
            time.sleep(0.2)
    finally:
        if browser.poll() is None:
            os.killpg(browser.pid, signal.SIGTERM)
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(browser.pid, signal.SIGKILL)
            browser.wait(10)
        server.shutdown()
        server.server_close()
    if not server.reports:
        log = browser.stderr.read().decode(errors="replace")[-2000:] if browser.stderr else ""
        pytest.fail(f"the viewer reported nothing within {BROWSER_TIMEOUT_S}s; chromium: {log}")
    return server.reports[0]


def view_along(yaw_degrees: float) -> BlenderCamera:
    """A camera at the origin looking along Blender +X turned by ``yaw`` about +Z (Z up),
    with the viewer's vertical field of view and window size."""
    a = math.radians(yaw_degrees)
    forward = np.array([math.cos(a), math.sin(a), 0.0])
    up = np.array([0.0, 0.0, 1.0])
    rotation = np.stack([np.cross(forward, up), up, -forward], axis=1)
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    sensor_height = 24.0
    lens = sensor_height / 2 / math.tan(math.radians(VIEWER_FOV) / 2)
    return BlenderCamera.from_dict(
        {
            "name": f"yaw{yaw_degrees:g}",
            "matrix_world": matrix.tolist(),
            "lens": lens,
            "sensor_width": 36.0,
            "sensor_height": sensor_height,
            "sensor_fit": "VERTICAL",
            "shift_x": 0.0,
            "shift_y": 0.0,
            "resolution_x": VIEW_W,
            "resolution_y": VIEW_H,
            "pixel_aspect_x": 1.0,
            "pixel_aspect_y": 1.0,
        }
    )


def decode_rgba(report: dict) -> np.ndarray:
    """The viewer's drawing buffer as (H, W, 3) uint8, row 0 at the top (GL reads bottom-up)."""
    raw = np.frombuffer(base64.b64decode(report["rgba"]), np.uint8)
    return raw.reshape(report["h"], report["w"], 4)[::-1, :, :3]


def test_viewer_plays_the_loop_and_shows_panorama_and_scene_along_blender_x(
    package: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    folder, panorama = package
    report = run_browser(folder, tmp_path / "profile")
    assert report.get("ok"), f"viewer failed in the browser: {report}"
    assert report["muted"] and report["loop"] and not report["paused"]
    assert report["time"] > 0.3, "the video did not advance"
    assert report["scene"]["sceneLoaded"], f"the glTF scene did not load: {report['scene']}"
    shot = decode_rgba(report).astype(np.float32)
    assert shot.shape == (VIEW_H, VIEW_W, 3)
    # The glTF marker 2 m along Blender +X from the viewpoint sits at the view centre.
    centre = shot[VIEW_H // 2 - 2 : VIEW_H // 2 + 3, VIEW_W // 2 - 2 : VIEW_W // 2 + 3]
    assert centre[..., 0].min() > 200 and centre[..., 1].max() < 60, centre.mean((0, 1))
    assert centre[..., 2].min() > 200
    outside = np.ones((VIEW_H, VIEW_W), bool)
    outside[
        VIEW_H // 2 - MARKER_HALF_PX : VIEW_H // 2 + MARKER_HALF_PX,
        VIEW_W // 2 - MARKER_HALF_PX : VIEW_W // 2 + MARKER_HALF_PX,
    ] = False

    def error(camera_yaw: float, mirror: bool = False) -> float:
        expected = equirect_to_camera(panorama, view_along(camera_yaw)).astype(np.float32)
        if mirror:
            expected = expected[:, ::-1]
        return float(np.mean(np.abs(shot - expected)[outside]))

    straight = error(0.0)
    # The screenshot is the panorama seen along +X (H.264 and texture filtering aside) …
    assert straight < 8.0, f"mean abs error {straight:.1f} against the +X view"
    # … and clearly not the view along any other axis, nor a mirrored one.
    for wrong in (error(90.0), error(180.0), error(-90.0), error(0.0, mirror=True)):
        assert wrong > 3 * straight, (straight, wrong)
    # A structured view, not a blank canvas.
    assert shot.std() > 20


def test_package_is_offline_and_records_three_version(
    package: tuple[Path, np.ndarray],
) -> None:
    folder, _ = package
    html = (folder / "index.html").read_text(encoding="utf-8")
    index = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    assert "http://" not in html and "https://" not in html, "the viewer must work offline"
    assert "loop muted playsinline" in html
    for rel in index["three_files"]:
        assert (folder / rel).is_file()
    assert (folder / "vendor/three/LICENSE").is_file()
    vendored = json.loads((folder / "vendor/three/package.json").read_text(encoding="utf-8"))
    assert vendored["version"] == index["three_version"]
    assert (folder / index["video"]).is_file() and index["video"].endswith("_360.mp4")
