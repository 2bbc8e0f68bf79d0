"""Cubemap faces and sheets of a panorama frame, for game engines (Unity, Unreal).

Faces follow :data:`engine.projection.CUBE_FACES` (py360convert's ``F R B L U D``):
F looks along Blender **+X** (the equirect centre), R along −Y, B along −X (the
seam), L along +Y, U along +Z (its bottom edge touches F's top edge) and D along −Z
(its top edge touches F's bottom edge); every face is seen from inside the cube,
image-up = +Z for the four side faces. Every frame of a loop is written, one folder of
frames per face, plus a 6×1 strip video; frame 0 also as sheets: ``horizon`` (6×1 in
that order) and ``dice`` (a cross: U above F, L F R B across, D below F).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..cameras import yaw_rotation
from ..colour import DisplayTransform, display_transform
from ..progress import JobContext
from ..projection import (
    FACE_ORDER,
    cube_face_directions,
    cubemap_sheet,
    equirect_directions,
    pad_equirect,
    remap_equirect,
    sampling_map,
)

#: The 6×1 strip video of every frame (F R B L U D left to right).
STRIP_VIDEO = "horizon.mp4"

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

Every face has one folder, `F/frame_000000.png` … (EXR for HDR loops), one file per
loop frame; `horizon.mp4` is the 6x1 strip of every frame (an 8-bit preview).

The World's rotation (`yaw_degrees` in the export's manifest, PanoLoop's Mapping node)
is already applied: F shows what Blender shows along +X with the World turned, and
`panorama.hdr` is the turned panorama. Blender: put `panorama.hdr` on an Environment
Texture node with no rotation.

Unity: Skybox/Panoramic samples u = 0.5 - atan2(z, x) / 2pi, so the equirect centre
shows at Unity +X and column 1/4 at Unity +Z. Unity's glTF importers (UnityGLTF,
glTFast) mirror X to go left-handed, so a Blender scene brought in through glTF lands
with Blender +X at Unity -X, +Y at Unity -Z and +Z at Unity +Y: set the skybox's
Rotation to 180 to see the panorama around the scene as Blender shows it.

Unreal: import the 2:1 `panorama.hdr` (or a PNG frame) as a texture cube
(longitude-latitude); check the yaw against the `F` face once in the editor, since
importers differ in their axis conversion from Blender.
"""


class CubeFaces:
    """Six cube faces of ``face_size``² from W×H equirect frames, maps built once.

    ``yaw_degrees`` is the World's rotation: face F shows the texture at ``Rz(yaw)·(+X)``,
    i.e. what Blender shows along +X with the World turned (every face likewise).
    """

    def __init__(self, width: int, height: int, face_size: int, yaw_degrees: float = 0.0):
        turn = yaw_rotation(yaw_degrees)
        self.maps = {
            face: sampling_map(cube_face_directions(face, face_size) @ turn.T, width, height)
            for face in FACE_ORDER
        }

    def __call__(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        padded = pad_equirect(frame)
        return {face: remap_equirect(padded, m, padded=True) for face, m in self.maps.items()}


def write_cubemaps(
    frames: Iterable[np.ndarray],
    count: int,
    folder: Path,
    face_size: int,
    fps: float,
    *,
    yaw_degrees: float = 0.0,
    display: DisplayTransform | None = None,
    ctx: JobContext | None = None,
) -> dict[str, Any]:
    """Write every frame's faces as sequences ``<F|R|B|L|U|D>/frame_NNNNNN.<png|exr>``,
    a 6×1 strip video ``horizon.mp4`` (8-bit preview), and stills of frame 0.

    ``frames`` yields ``count`` equirect frames of one dtype. float32 frames give EXR
    faces (HDR kept) with a tone-mapped strip video; uint8/16 give PNG. Frame 0 also
    becomes ``horizon``/``dice`` sheets (+ 8-bit previews and ``panorama.hdr``, Radiance,
    what Unreal imports as a cube, for float frames). Returns the written names by role,
    relative to ``folder``. The strip video and the sheets' previews are tone-mapped by
    ``display`` (:class:`engine.colour.DisplayTransform`; default Blender's AgX through
    ``$OCIO``).
    """
    from ..contract import frame_name
    from ..media import encode_mp4, write_image

    ctx = ctx or JobContext()
    display = display or display_transform()
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {}
    state: dict[str, Any] = {}

    def strips() -> Iterator[np.ndarray]:
        for index, frame in enumerate(frames):
            ctx.step("cubemap", index + 1, count)
            if index == 0:
                state["cube"] = CubeFaces(frame.shape[1], frame.shape[0], face_size, yaw_degrees)
                state["ext"] = ".exr" if frame.dtype.kind == "f" else ".png"
                for face in FACE_ORDER:
                    (folder / face).mkdir()
            faces = state["cube"](frame)
            for face in FACE_ORDER:
                write_image(folder / face / frame_name(index, state["ext"]), faces[face])
            if index == 0:
                stills = _write_stills(frame, faces, folder, state["ext"], yaw_degrees, display)
                written.update(stills)
            yield display.to_uint8(cubemap_sheet(faces, "horizon"))

    encode_mp4(strips(), folder / STRIP_VIDEO, fps)
    written["faces"] = {face: f"{face}/frame_NNNNNN{state['ext']}" for face in FACE_ORDER}
    written["frames"] = count
    written["strip_video"] = STRIP_VIDEO
    (folder / "ORIENTATION.md").write_text(ORIENTATION_TEXT, encoding="utf-8")
    written["orientation"] = "ORIENTATION.md"
    return written


def _write_stills(
    frame: np.ndarray,
    faces: dict[str, np.ndarray],
    folder: Path,
    ext: str,
    yaw: float,
    display: DisplayTransform,
) -> dict[str, str]:
    """Frame 0 as ``horizon`` and ``dice`` sheets (skyboxes are often stills)."""
    from ..media import write_image

    written = {}
    for layout in ("horizon", "dice"):
        sheet = cubemap_sheet(faces, layout)
        write_image(folder / f"{layout}{ext}", sheet)
        written[layout] = f"{layout}{ext}"
        if ext == ".exr":
            write_image(folder / f"{layout}_preview.png", display.to_uint8(sheet))
            written[f"{layout}_preview"] = f"{layout}_preview.png"
    if ext == ".exr":
        _write_radiance_hdr(folder / "panorama.hdr", _turned(frame, yaw))
        written["hdr"] = "panorama.hdr"
    return written


def _turned(frame: np.ndarray, yaw_degrees: float) -> np.ndarray:
    """The equirect as Blender shows it with the World turned (for ``panorama.hdr``)."""
    if yaw_degrees == 0:
        return frame
    height, width = frame.shape[:2]
    directions = equirect_directions(width, height) @ yaw_rotation(yaw_degrees).T
    return remap_equirect(frame, sampling_map(directions, width, height))


def _write_radiance_hdr(path: Path, frame: np.ndarray) -> None:
    import cv2

    from ..errors import PanoLoopError

    bgr = np.ascontiguousarray(np.clip(frame[:, :, ::-1], 0, None).astype(np.float32))
    if not cv2.imwrite(str(path), bgr):
        raise PanoLoopError(f"could not write {path}")
