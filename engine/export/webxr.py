"""A self-contained WebXR package: the looping 360° video, the scene as glTF, a three.js viewer.

Layout of the package folder::

    index.html              the viewer (open it through any static web server)
    <name>_360.mp4          the looping equirect video (spherical metadata included)
    scene.glb               the Blender scene, when one was given (Blender's glTF exporter)
    vendor/three/...        three.js, copied from the npm package (works offline)
    package.json            what is where, the three.js version, the orientation

Orientation: glTF (and three.js) is Y-up; Blender's glTF exporter maps Blender (X, Y, Z)
to (X, Z, −Y). The viewer puts the equirect centre (Blender +X) at three.js +X and
column ¼ (Blender +Y) at three.js −Z, so the video and the glTF scene agree, then turns
the whole world +90° about the vertical axis so a viewer starts out facing the
panorama centre (WebXR's forward is −Z). The video element is ``loop muted playsinline``
(browsers autoplay only muted video); the "Enter VR" button comes from three's VRButton.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

#: The vendored three.js (``engine/export/webxr_assets/VENDORED.md``).
THREE_VERSION = "0.187.0"
ASSETS = Path(__file__).with_name("webxr_assets")
VENDOR_DIR = "vendor"
SCENE_NAME = "scene.glb"

INDEX_HTML = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__ — PanoLoop 360°</title>
<style>
  html, body { margin: 0; height: 100%; overflow: hidden; background: #000; }
  #start { position: absolute; top: 16px; left: 16px; z-index: 2; font: 14px sans-serif; }
  #start.hidden { display: none; }
</style>
<script type="importmap">
{ "imports": {
    "three": "./vendor/three/build/three.module.js",
    "three/addons/": "./vendor/three/examples/jsm/"
} }
</script>
</head>
<body>
<video id="pano" src="__VIDEO__" loop muted playsinline crossorigin="anonymous"
       preload="auto" style="display:none"></video>
<button id="start" class="hidden">Play</button>
<script type="module">
import * as THREE from 'three';
import { VRButton } from 'three/addons/webxr/VRButton.js';

const CONFIG = __CONFIG__;
const video = document.getElementById('pano');
const renderer = new THREE.WebGLRenderer({ antialias: true });
renderer.setPixelRatio(window.devicePixelRatio);
renderer.setSize(window.innerWidth, window.innerHeight);
renderer.xr.enabled = true;
renderer.xr.setReferenceSpaceType('local');
document.body.appendChild(renderer.domElement);
document.body.appendChild(VRButton.createButton(renderer));

const scene = new THREE.Scene();
const camera = new THREE.PerspectiveCamera(CONFIG.fov, window.innerWidth / window.innerHeight,
                                           0.05, 2000);
// World group: Blender's axes after the glTF exporter (+X stays +X, Blender +Y is -Z),
// turned +90 degrees about Y so the default view (-Z) faces Blender +X, the pano centre.
const world = new THREE.Group();
world.rotation.y = Math.PI / 2;
scene.add(world);

// Inverted sphere: scale(-1, 1, 1) shows the texture from inside, unmirrored; three's
// sphere puts texture u = 0.5 at -X once inverted, so half a turn puts it at +X.
// CONFIG.yaw is the World Mapping node's Z rotation (Point): the view turns by -yaw.
const texture = new THREE.VideoTexture(video);
texture.colorSpace = THREE.SRGBColorSpace;
const geometry = new THREE.SphereGeometry(500, 120, 60);
geometry.scale(-1, 1, 1);
const sphere = new THREE.Mesh(geometry, new THREE.MeshBasicMaterial({ map: texture }));
sphere.rotation.y = Math.PI - THREE.MathUtils.degToRad(CONFIG.yaw);
world.add(sphere);

const state = { sceneLoaded: false, sceneError: null };
if (CONFIG.scene) {
  const { GLTFLoader } = await import('three/addons/loaders/GLTFLoader.js');
  scene.add(new THREE.HemisphereLight(0xffffff, 0x444444, 2.0));
  new GLTFLoader().load(CONFIG.scene, (gltf) => {
    // Move the viewpoint (Blender coordinates, in glTF axes) to the origin, then turn.
    const shifted = new THREE.Group();
    shifted.position.set(-CONFIG.viewpoint[0], -CONFIG.viewpoint[2], CONFIG.viewpoint[1]);
    shifted.add(gltf.scene);
    world.add(shifted);
    state.sceneLoaded = true;
  }, undefined, (err) => { state.sceneError = String(err); });
}

function play() {
  video.play().then(() => document.getElementById('start').classList.add('hidden'))
    .catch(() => document.getElementById('start').classList.remove('hidden'));
}
document.getElementById('start').addEventListener('click', play);
play();

// Look around with the mouse (outside VR).
let lon = 0, lat = 0, drag = null;
renderer.domElement.addEventListener('pointerdown', (e) => {
  drag = [e.clientX, e.clientY, lon, lat];
});
window.addEventListener('pointerup', () => { drag = null; });
window.addEventListener('pointermove', (e) => {
  if (!drag) return;
  lon = drag[2] + (drag[0] - e.clientX) * 0.2;
  lat = Math.max(-85, Math.min(85, drag[3] + (e.clientY - drag[1]) * 0.2));
});
window.addEventListener('resize', () => {
  camera.aspect = window.innerWidth / window.innerHeight;
  camera.updateProjectionMatrix();
  renderer.setSize(window.innerWidth, window.innerHeight);
});
renderer.setAnimationLoop(() => {
  if (!renderer.xr.isPresenting) {
    camera.rotation.set(THREE.MathUtils.degToRad(lat), THREE.MathUtils.degToRad(lon), 0, 'YXZ');
  }
  renderer.render(scene, camera);
});
// For tests and tools: the live objects (a page in the same origin can read pixels).
window.panoloop = { THREE, renderer, scene, camera, video, world, state, config: CONFIG,
                    version: THREE.REVISION };
</script>
</body>
</html>
"""


def vendor_three(folder: Path) -> list[str]:
    """Copy the vendored three.js files into ``folder/vendor/three``; returns their paths."""
    source = ASSETS / "three"
    target = folder / VENDOR_DIR / "three"
    shutil.copytree(source, target)
    return sorted(str(p.relative_to(folder)) for p in target.rglob("*") if p.is_file())


def write_webxr_package(
    folder: Path,
    video: Path,
    *,
    title: str,
    gltf: Path | None = None,
    viewpoint: tuple[float, float, float] = (0.0, 0.0, 0.0),
    yaw_degrees: float = 0.0,
    fov_degrees: float = 75.0,
) -> dict[str, object]:
    """Assemble the package in ``folder`` (which must exist and be empty); returns its index.

    ``video`` is copied in; ``gltf`` (a ``.glb``) too when given. ``viewpoint`` is the
    Blender-world point the panorama is seen from (the glTF scene is shifted so the
    viewer stands there); ``yaw_degrees`` is the World Mapping node's Z rotation (Point
    type) in Blender.
    """
    from ..errors import BadInput

    if gltf is not None and gltf.suffix.lower() != ".glb":
        raise BadInput(f"scene {gltf} must be a binary glTF (.glb)")
    shutil.copy2(video, folder / video.name)
    if gltf is not None:
        shutil.copy2(gltf, folder / SCENE_NAME)
    files = vendor_three(folder)
    config = {
        "fov": float(fov_degrees),
        "yaw": float(yaw_degrees),
        "scene": SCENE_NAME if gltf is not None else None,
        "viewpoint": [float(v) for v in viewpoint],
    }
    html = (
        INDEX_HTML.replace("__TITLE__", _html_text(title))
        .replace("__VIDEO__", _html_text(video.name))
        .replace("__CONFIG__", json.dumps(config))
    )
    (folder / "index.html").write_text(html, encoding="utf-8")
    index = {
        "viewer": "index.html",
        "video": video.name,
        "scene": config["scene"],
        "three_version": THREE_VERSION,
        "three_files": files,
        "orientation": "equirect centre = Blender +X = three.js +X; Blender +Z = three.js +Y",
        "viewpoint_blender": config["viewpoint"],
        "yaw_degrees": config["yaw"],
        "serve": "python -m http.server --bind 127.0.0.1 8000 (then open /index.html)",
    }
    (folder / "package.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return index


def _html_text(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )
