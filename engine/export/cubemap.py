"""Cubemap faces and sheets of a panorama frame, for game engines (Unity, Unreal).

Faces follow :data:`engine.projection.CUBE_FACES` (py360convert's ``F R B L U D``):
F looks along Blender **+X** (the equirect centre), R along −Y, B along −X (the
seam), L along +Y, U along +Z (its bottom edge touches F's top edge) and D along −Z
(its top edge touches F's bottom edge); every face is seen from inside the cube,
image-up = +Z for the four side faces. Sheets: ``horizon`` (6×1 in that order) and
``dice`` (a cross: U above F, L F R B across, D below F).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..projection import FACE_ORDER, cubemap_sheet, equirect_to_cubemap

ORIENTATION_TEXT = """\
# Cubemap orientation (PanoLoop)

The panorama is in Blender's world convention: Z up, the equirect centre column faces
Blender +X, column 1/4 faces +Y, the left/right wrap seam faces -X, row 0 is straight up.

Faces (py360convert's F R B L U D order; each face seen from inside the cube):

| face | looks along (Blender) | image up | image right |
|------|-----------------------|----------|-------------|
| F    | +X (equirect centre)  | +Z       | -Y          |
| R    | -Y                    | +Z       | -X          |
| B    | -X (equirect seam)    | +Z       | +Y          |
| L    | +Y                    | +Z       | +X          |
| U    | +Z (up)               | -X       | -Y          |
| D    | -Z (down)             | +X       | -Y          |

Sheets: `horizon` = F R B L U D left to right; `dice` = a 4x3 cross with U above F,
the row L F R B, and D below F.

Blender: put the equirect (or `panorama.hdr`) on an Environment Texture node; no
rotation is needed (the Mapping node's Z rotation, if any, is recorded in the export's
manifest as `yaw_degrees`).

Unity: Skybox/Panoramic samples u = 0.5 - atan2(z, x) / 2pi, so the equirect centre
shows at Unity +X and column 1/4 at Unity +Z. Unity's glTF importers (UnityGLTF,
glTFast) mirror X to go left-handed, so a Blender scene brought in through glTF lands
with Blender +X at Unity -X, +Y at Unity -Z and +Z at Unity +Y: set the skybox's
Rotation to 180 to see the panorama around the scene as Blender shows it.

Unreal: import the 2:1 `panorama.hdr` (or a PNG frame) as a texture cube
(longitude-latitude); check the yaw against the `F` face once in the editor, since
importers differ in their axis conversion from Blender.
"""


def write_cubemaps(frame: np.ndarray, folder: Path, face_size: int) -> dict[str, str]:
    """Write faces ``F.ext`` … ``D.ext`` and ``horizon``/``dice`` sheets of one frame.

    float32 frames are written as EXR (HDR kept) with 8-bit PNG previews beside the
    sheets, plus ``panorama.hdr`` (Radiance, what Unreal imports as a cube); uint8/16 as
    PNG. Returns the written file names by role, relative to ``folder``.
    """
    from ..media import to_display_uint8, write_image

    folder.mkdir(parents=True, exist_ok=True)
    faces = equirect_to_cubemap(frame, face_size, "linear")
    ext = ".exr" if frame.dtype.kind == "f" else ".png"
    written: dict[str, str] = {}
    for face in FACE_ORDER:
        write_image(folder / f"{face}{ext}", faces[face])
        written[f"face_{face}"] = f"{face}{ext}"
    for layout in ("horizon", "dice"):
        sheet = cubemap_sheet(faces, layout)
        write_image(folder / f"{layout}{ext}", sheet)
        written[layout] = f"{layout}{ext}"
        if ext == ".exr":
            write_image(folder / f"{layout}_preview.png", to_display_uint8(sheet))
            written[f"{layout}_preview"] = f"{layout}_preview.png"
    if ext == ".exr":
        _write_radiance_hdr(folder / "panorama.hdr", frame)
        written["hdr"] = "panorama.hdr"
    (folder / "ORIENTATION.md").write_text(ORIENTATION_TEXT, encoding="utf-8")
    written["orientation"] = "ORIENTATION.md"
    return written


def _write_radiance_hdr(path: Path, frame: np.ndarray) -> None:
    import cv2

    from ..errors import PanoLoopError

    bgr = np.ascontiguousarray(np.clip(frame[:, :, ::-1], 0, None).astype(np.float32))
    if not cv2.imwrite(str(path), bgr):
        raise PanoLoopError(f"could not write {path}")
