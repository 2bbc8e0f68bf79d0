"""PanoLoop's output contract, in one place, standard library only.

The engine, the Blender add-on and the background Blender script all import this
module (Blender imports nothing else of ``engine``), so folder and file names, manifest
kinds and fields, frame naming, the orientation, safe names, manifest validation, the
frame-range rule and the atomic output folder each have exactly one definition.

Conventions:

- **Frames** are numbered from 0: ``frame_000000.png`` (or ``.exr``), six digits.
- **Orientation** (:data:`ORIENTATION`): Blender's world texture — Z up, the panorama's
  centre column faces +X, u = 0.25 faces +Y, the wrap seam faces −X, row 0 is +Z. A
  World turned by PanoLoop's Mapping node is recorded as ``yaw_degrees`` (the Mapping
  node's Z rotation, degrees, counter-clockwise seen from above).
- **Safe names** (:func:`safe_names`): a camera or scene name becomes a file or folder
  name made of ``A-Z a-z 0-9 _ . -`` only, never dot- or dash-led, at most
  :data:`MAX_NAME_CHARS` characters, never a name the contract itself uses; names that
  would become equal (also when compared case-insensitively, as macOS and Windows do)
  get a deterministic suffix taken from a hash of the original name, and the mapping is
  recorded in each manifest (``cameras[i].folder``).
- **Manifests are untrusted input** (:func:`read_manifest`): a wrong type is a one-line
  :class:`BadInput` naming the file, the field and the value.
- **Output folders** (:func:`atomic_output_dir`) are built in a hidden temporary
  sibling ``.NAME.partial-PID-XXXX`` (created with the user's umask) and renamed into
  place whole, never replacing anything that appeared at the output path meanwhile.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------- errors


class PanoLoopError(Exception):
    """A failure the user can act on; its message is one line that names the value.

    ``fix`` optionally says what to do about it (the add-on shows it under the error).
    The engine's error types and the add-on's one error type are this class.
    """

    exit_code = 1

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix

    def report_text(self) -> str:
        """The message and its fix on one line, as Blender's reports show it."""
        return f"{self} — {self.fix}" if self.fix else str(self)


class BadInput(PanoLoopError):
    """Refused input, raised before anything is loaded or written (CLI exit code 2)."""

    exit_code = 2


class JobCancelled(PanoLoopError):
    """The user cancelled the job; whatever it had started writing is already removed."""

    exit_code = 130


class Unwritable(BadInput):
    """The system refuses an output: no space, a read-only disk, no permission, a file where
    a folder should be. Whatever the job had written is already removed (exit code 2)."""


#: errno → why an output could not be written, as the user's one line says it.
_WRITE_ERRNOS = {
    errno.ENOSPC: "no space left on {disk}",
    errno.EDQUOT: "disk quota exceeded on {disk}",
    errno.EFBIG: "file too large for {disk} (file size limit reached)",
    errno.EROFS: "{disk} is mounted read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.ENAMETOOLONG: "the name is too long for the file system",
    errno.EEXIST: "it already exists",
}
_WRITE_FIXES = {
    errno.ENOSPC: "free some space or choose an output on another disk",
    errno.EDQUOT: "free some space or choose an output on another disk",
    errno.EFBIG: "choose an output on another disk or raise the file size limit",
    errno.EROFS: "choose an output on a writable disk",
    errno.EACCES: "choose an output folder you may write to",
    errno.EPERM: "choose an output folder you may write to",
}


def disk_of(path: str | os.PathLike[str]) -> str:
    """The mount point holding ``path`` (its nearest existing ancestor), for messages."""
    current = os.path.abspath(os.fspath(path))
    while not os.path.exists(current) and os.path.dirname(current) != current:
        current = os.path.dirname(current)
    try:
        device = os.stat(current).st_dev
        while os.path.dirname(current) != current:
            parent = os.path.dirname(current)
            if os.stat(parent).st_dev != device:
                break
            current = parent
    except OSError:
        pass
    return current


def unwritable(exc: OSError, path: str | os.PathLike[str] | None = None) -> Unwritable | None:
    """A one-line :class:`Unwritable` for an OSError the user can act on, else None.

    ``path`` names the output when the error itself carries no file name (a failed
    ``write`` on an open file reports only its errno).
    """
    reason = _WRITE_ERRNOS.get(exc.errno or -1)
    if reason is None:
        return None
    where = exc.filename if exc.filename is not None else path
    where_text = shown_path(where) if where is not None else "the output"
    disk = disk_of(where) if where is not None else "the disk"
    message = f"cannot write {where_text}: {reason.format(disk=disk)}"
    return Unwritable(message, _WRITE_FIXES.get(exc.errno or -1, "choose another output"))


# --------------------------------------------------------------------------- paths


def path_problem(text: str) -> str | None:
    """Why ``text`` cannot be a path PanoLoop hands to the filesystem and OpenCV, or None.

    Bytes that are not UTF-8 arrive as lone surrogates (Python's ``surrogateescape``);
    OpenCV's path conversion crashes on them, and Blender cannot show them either.
    """
    if not text:
        return "is empty"
    if "\x00" in text:
        return "contains a NUL byte"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 (rename the file or folder)"
    return None


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path as one printable line, whatever bytes it holds (``\\xff`` for a stray byte)."""
    text = os.fspath(path)
    try:
        shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no byte became (from JSON's \\udXXX)
        shown = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return shown.replace("\n", "\\n").replace("\x00", "\\x00")


# --------------------------------------------------------------------------- limits
# One set of numbers for the CLI, the worker and the add-on's properties. The engine
# applies them to every argument it parses (engine/checks.py); the add-on gives its
# properties the same ranges.


@dataclass(frozen=True)
class Limit:
    """The accepted range of one kind of value: ``low <= value <= high`` (``unit`` for messages).

    ``low_open`` makes the lower bound exclusive (seconds must be > 0). ``integer``
    values must be whole numbers.
    """

    what: str
    low: float
    high: float
    unit: str = ""
    integer: bool = False
    low_open: bool = False

    def describe(self) -> str:
        """``"a number from 1 to 240 fps"`` — the rule, as a message says it."""
        kind = "a whole number" if self.integer else "a number"
        low = "above" if self.low_open else "from"
        unit = f" {self.unit}" if self.unit else ""
        return f"{kind} {low} {_fmt(self.low)} to {_fmt(self.high)}{unit}"

    def contains(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not math.isfinite(value):
            return False
        if self.integer and float(value) != int(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    def check(self, value: Any, label: str | None = None) -> Any:
        """``value`` if it is within the limit, else :class:`BadInput` naming it."""
        if not self.contains(value):
            raise BadInput(f"{label or self.what} must be {self.describe()}, got {value!r}")
        return int(value) if self.integer else float(value)


def _fmt(number: float) -> str:
    return f"{int(number):,}" if float(number).is_integer() else f"{number:g}"


#: Frames per second of every loop, clip and video (the add-on's FPS property too).
#: 240 is the fastest rate Blender's scene settings offer as a preset; headset video is
#: limited further (60 fps) by the export, which says so.
FPS = Limit("fps", 1, 240, "fps")
#: Frames are numbered ``frame_NNNNNN``: six digits.
FRAMES = Limit("frames", 1, 999_999, "frames", integer=True)
SECONDS = Limit("seconds", 0, 86_400, "s", low_open=True)
#: A seed every backend accepts (numpy needs < 2**32; Blender's IntProperty is 32-bit).
SEED = Limit("seed", 0, 2**31 - 1, integer=True)
#: Motion amplitude multiplier: 100× the prior's calm motion already tears the image apart.
STRENGTH = Limit("strength", 0, 100)
#: A Blender-world point in metres (Blender's largest clip distance is about 1e6 m).
COORDINATE = Limit("coordinate", -1e6, 1e6, "m")
#: Cube face side in pixels (OpenCV's largest image side); memory is checked apart.
FACE_SIZE = Limit("face size", 2, 2**20, "px", integer=True)
#: Blender's own frame numbers (MAXFRAME).
BLENDER_FRAME = Limit("frame", -1_048_574, 1_048_574, integer=True)
#: Contact-sheet columns.
INSTANTS = Limit("instants", 1, 64, integer=True)
#: x264 constant rate factor.
CRF = Limit("crf", 0, 51, integer=True)
#: Any other float a user types: finite and of a magnitude arithmetic survives.
ANY_NUMBER = Limit("number", -1e9, 1e9)
#: Any other integer a user types: a 32-bit signed value.
ANY_INTEGER = Limit("integer", -(2**31), 2**31 - 1, integer=True)
#: Camera values in ``cameras.json`` (Blender's camera data; ranges wide around Blender's
#: own so every real camera passes, narrow enough that rays stay finite).
CAMERA_LENS = Limit("lens", 0.01, 1e5, "mm")
CAMERA_SENSOR = Limit("sensor size", 0.01, 1e4, "mm")
CAMERA_SHIFT = Limit("shift", -100, 100)
CAMERA_PIXEL_ASPECT = Limit("pixel aspect", 0.001, 1000)
#: Blender's largest render resolution per side.
CAMERA_RESOLUTION = Limit("resolution", 1, 65_536, "px", integer=True)


# --------------------------------------------------------------------------- names

MANIFEST_NAME = "manifest.json"
CAMERAS_NAME = "cameras.json"
FRAMES_DIR = "frames"
PREVIEW_NAME = "panorama.mp4"
#: ``engine multicam``: reprojected views, Blender renders, the contact sheet.
VIEWS_DIR = "views"
RENDERS_DIR = "renders"
SHEET_NAME = "contact_sheet.png"
#: ``engine export``: cube faces and the WebXR package.
CUBEMAP_DIR = "cubemap"
WEBXR_DIR = "webxr"
#: The VR package (``panoloop.export_vr``).
SCENE_GLB = "scene.glb"
PANORAMA_DIR = "panorama"
MONO_360_DIR = "scene_360"
STEREO_360_DIR = "scene_360_TB"
#: PanoLoop's own nodes in the World: the environment texture and the Mapping node
#: that turns it (its Z rotation is ``scene.panoloop.world_rotation``).
ENV_NODE_NAME = "PanoLoop Environment"
MAPPING_NODE_NAME = "PanoLoop Rotation"

#: Manifest ``kind`` values, one per kind of output folder.
KIND_PANORAMA = "panorama"
KIND_CAMERA_VIEWS = "camera_views"
KIND_MULTICAM = "multicam"
KIND_BLENDER_RENDERS = "blender_renders"
KIND_VR_EXPORT = "vr_export"
KIND_VR_PACKAGE = "vr_package"

#: Names a camera folder or video must never take: the contract's own files.
RESERVED_NAMES = frozenset(
    n.casefold()
    for n in (
        MANIFEST_NAME,
        CAMERAS_NAME,
        FRAMES_DIR,
        PREVIEW_NAME,
        VIEWS_DIR,
        RENDERS_DIR,
        SHEET_NAME,
        CUBEMAP_DIR,
        WEBXR_DIR,
        SCENE_GLB,
        PANORAMA_DIR,
        MONO_360_DIR,
        STEREO_360_DIR,
        # Windows device names cannot be files at all.
        *("CON", "PRN", "AUX", "NUL"),
        *(f"COM{i}" for i in range(1, 10)),
        *(f"LPT{i}" for i in range(1, 10)),
    )
)
#: Longest safe name (leaves room for suffixes such as ``_render.mp4`` and the
#: ``.NAME.partial-PID-XXXX`` temporary sibling within common 255-byte limits).
MAX_NAME_CHARS = 80
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9_.-]+")
_HASH_CHARS = 6

# --------------------------------------------------------------------------- frames

IMAGE_SUFFIXES = (".exr", ".hdr", ".png", ".jpg", ".jpeg")
FRAME_PREFIX = "frame_"
FRAME_DIGITS = 6
#: A frame file's stem: anything, then its number at the end.
FRAME_NAME_RE = re.compile(r"^(.*?)(\d+)$")

#: Largest ``--yaw`` accepted (degrees): beyond it a float loses sub-degree precision.
MAX_YAW_DEGREES = 1e6

#: Blender's world-texture convention, recorded in every panorama manifest.
ORIENTATION = {
    "convention": "blender",
    "up": "+Z",
    "center": "+X",
    "seam": "-X",
    "u_0.25": "+Y",
}


def yaw_degrees(text: str) -> float:
    """``--yaw DEG``: the World's rotation in degrees, a finite number (argparse type)."""
    value = float(text)
    if not math.isfinite(value) or abs(value) > MAX_YAW_DEGREES:
        raise ValueError(f"yaw {text!r} must be a finite number of degrees")
    return value


def add_yaw_argument(parser: Any) -> None:
    """The ``--yaw DEG`` option every command that maps panorama pixels to directions has."""
    parser.add_argument(
        "--yaw",
        type=yaw_degrees,
        default=0.0,
        metavar="DEG",
        help="the World's rotation: Z rotation of PanoLoop's Mapping node in degrees "
        "(the panorama is looked up at Rz(yaw)·d for a view direction d; default 0)",
    )


def frame_name(index: int, suffix: str) -> str:
    """The file name of frame ``index`` (from 0): ``frame_000042.png``."""
    return f"{FRAME_PREFIX}{index:0{FRAME_DIGITS}d}{suffix}"


def frame_number(path: str | os.PathLike[str]) -> int | None:
    """The number at the end of a frame file's stem, or None when it has none."""
    match = FRAME_NAME_RE.match(Path(path).stem)
    return int(match.group(2)) if match else None


def list_frames(folder: str | os.PathLike[str]) -> list[Path]:
    """The numbered image files of a frame folder, in frame order.

    Raises :class:`BadInput` if the folder is missing or holds no images, mixes file
    types, or its numbering has gaps (a gap would desynchronise every camera after it).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInput(f"frame folder {folder} does not exist")
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if not files:
        raise BadInput(f"no EXR/HDR/PNG/JPG frames in folder {folder}")
    suffixes = {p.suffix.lower() for p in files}
    if len(suffixes) > 1:
        raise BadInput(f"folder {folder} mixes frame types {sorted(suffixes)}")
    numbered = []
    for p in files:
        number = frame_number(p)
        if number is None:
            raise BadInput(f"frame file {p} has no frame number at the end of its name")
        numbered.append((number, p))
    numbered.sort()
    numbers = [n for n, _ in numbered]
    expected = list(range(numbers[0], numbers[0] + len(numbers)))
    if numbers != expected:
        missing = sorted(set(expected) - set(numbers))
        raise BadInput(f"frame numbering in {folder} has gaps (missing {missing[:5]})")
    return [p for _, p in numbered]


# --------------------------------------------------------------------------- safe names


def _clean(name: str) -> str:
    """``name`` with unsafe runs as ``_``, no leading dots/dashes/underscores, cut short."""
    cleaned = _UNSAFE_RUN.sub("_", name).lstrip("._-")
    return cleaned[:MAX_NAME_CHARS].rstrip(".") or ""


def _hashed(name: str, stem: str) -> str:
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    return f"{stem[: MAX_NAME_CHARS - _HASH_CHARS - 1]}-{digest}"


def safe_names(names: Iterable[str], *, fallback: str = "camera") -> dict[str, str]:
    """Each name → a file or folder name that no other name of the set shares.

    A name that is already safe (nothing replaced, not reserved, not dot-led) keeps
    itself unless another safe name differs from it only in case; any other becomes its
    cleaned form, plus ``-<6 hex of sha256(name)>`` when that form is reserved, empty
    (``fallback`` is used) or equal — case-insensitively — to another name's. The result
    depends only on the set of names, not their order. NUL and other control characters
    are replaced like any unsafe character. Refuses (:class:`BadInput`, one line) a name
    given twice, a name that is not text, and the (astronomically unlikely) collision
    left after hashing.
    """
    names = list(names)
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str):
            raise BadInput(f"name {name!r} is not text")
        if name in seen:
            raise BadInput(f"name {name!r} appears twice; every camera needs its own name")
        seen.add(name)
    cleaned = {name: _clean(name) or fallback for name in names}
    owners: dict[str, list[str]] = {}
    for name, stem in cleaned.items():
        owners.setdefault(stem.casefold(), []).append(name)
    result = {}
    for name, stem in cleaned.items():
        # The one name of its group that is already safe keeps itself; the others (and
        # all of a group of several safe names differing only in case) get a hash.
        group = owners[stem.casefold()]
        lossless = [n for n in group if cleaned[n] == n]
        keeps = lossless == [name] or group == [name]
        if stem.casefold() in RESERVED_NAMES or not keeps or not _clean(name):
            stem = _hashed(name, stem)
        result[name] = stem
    folded = [v.casefold() for v in result.values()]
    if len(set(folded)) != len(folded):
        clash = sorted(n for n, v in result.items() if folded.count(v.casefold()) > 1)
        raise BadInput(f"names {clash} cannot be told apart as file names; rename one of them")
    return result


def safe_name(name: str, *, fallback: str = "output") -> str:
    """One name as a safe file name (see :func:`safe_names`), e.g. a scene or a video."""
    return safe_names([name], fallback=fallback)[name]


def check_folder_name(value: object, what: str) -> str:
    """Refuse a folder name read from a manifest that could leave its folder or hide."""
    if not isinstance(value, str) or not value:
        raise BadInput(f"{what} is {value!r}; it must be a non-empty folder name")
    if value.startswith(".") or "/" in value or "\\" in value or "\x00" in value:
        raise BadInput(f"{what} is {value!r}; it must be a plain folder name inside the output")
    return value


# --------------------------------------------------------------------------- manifests


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_number(value: object) -> bool:
    return _is_number(value) and math.isfinite(value) and value > 0


def _finite_number(value: object) -> bool:
    return _is_number(value) and math.isfinite(value)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _text(value: object) -> bool:
    return isinstance(value, str)


def _folder(value: object) -> bool:
    if not isinstance(value, str) or not value or "\x00" in value or value.startswith("."):
        return False
    parts = value.replace("\\", "/").split("/")
    return not Path(value).is_absolute() and all(p not in ("", ".", "..") for p in parts)


def _flag(value: object) -> bool:
    return isinstance(value, bool)


def _list(value: object) -> bool:
    return isinstance(value, list)


#: Known manifest fields → (test, what a valid value is). Unknown fields pass; a field
#: may be null only where ``optional`` says so.
FIELDS: dict[str, tuple[Callable[[object], bool], str]] = {
    "kind": (_text, "a string"),
    "projection": (_text, "a string"),
    "width": (_size, "a whole number of pixels ≥ 1"),
    "height": (_size, "a whole number of pixels ≥ 1"),
    "frames": (_count, "a whole number of frames ≥ 0"),
    "fps": (FPS.contains, FPS.describe()),
    "loop": (_flag, "true or false"),
    "frames_dir": (_folder, "a folder name inside the output folder"),
    "yaw_degrees": (_finite_number, "a finite number of degrees"),
    "cameras": (_list, "a list of cameras"),
    "frame_range": (_list, "a list [start, end]"),
}
#: Fields that may be null (``fps`` of a single still, for one).
NULLABLE = frozenset({"fps", "frames_dir", "kind"})


def validate_manifest(manifest: object, where: str | os.PathLike[str]) -> dict[str, Any]:
    """Check a parsed manifest's known fields; :class:`BadInput` naming field and value."""
    if not isinstance(manifest, dict):
        raise BadInput(f"{where} must hold a JSON object, not a {_type_name(manifest)}")
    for field, (test, wanted) in FIELDS.items():
        if field not in manifest:
            continue
        value = manifest[field]
        if value is None and field in NULLABLE:
            continue
        if not test(value):
            shown = json.dumps(value)[:60]
            raise BadInput(
                f"{where}: {field} is {shown} ({_type_name(value)}); it must be {wanted}"
            )
    for index, camera in enumerate(manifest.get("cameras") or []):
        if isinstance(camera, str):
            continue  # a panorama's manifest lists the names of the cameras it heeded
        if not isinstance(camera, dict) or not isinstance(camera.get("name"), str):
            raise BadInput(f"{where}: cameras[{index}] must be a name or an object with a name")
        if "folder" in camera:
            check_folder_name(camera["folder"], f"{where}: cameras[{index}].folder")
    frame_range = manifest.get("frame_range")
    if frame_range is not None and (
        len(frame_range) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in frame_range)
    ):
        raise BadInput(f"{where}: frame_range is {frame_range!r}; it must be [start, end]")
    return manifest


def read_manifest(folder: str | os.PathLike[str], *, kind: str | None = None) -> dict[str, Any]:
    """Read and validate ``folder/manifest.json``; ``kind`` (if given) must match.

    A panorama manifest written before kinds existed has none; it counts as
    :data:`KIND_PANORAMA` when its projection is equirectangular.
    """
    path = Path(folder) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(
            f"{folder} is not a PanoLoop output (no {MANIFEST_NAME})",
            "choose a folder written by PanoLoop",
        ) from None
    except IsADirectoryError:
        raise BadInput(f"{path} is a folder, not a manifest") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from None
    manifest = validate_manifest(manifest, path)
    if kind is not None and manifest_kind(manifest) != kind:
        raise BadInput(f"{folder} holds a {manifest_kind(manifest)!r} output, not {kind!r}")
    return manifest


def manifest_kind(manifest: dict[str, Any]) -> str | None:
    """The manifest's kind; a kind-less equirectangular manifest is a panorama."""
    kind = manifest.get("kind")
    if kind is None and manifest.get("projection") == "equirectangular":
        return KIND_PANORAMA
    return kind


def frames_folder(folder: str | os.PathLike[str], manifest: dict[str, Any]) -> Path:
    """The folder holding a panorama output's frames (``frames_dir`` was validated)."""
    return Path(folder) / (manifest.get("frames_dir") or FRAMES_DIR)


def write_manifest(folder: str | os.PathLike[str], manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` (UTF-8, indented) into ``folder``; refuses NaN/infinity."""
    path = Path(folder) / MANIFEST_NAME
    text = json.dumps(manifest, indent=2, sort_keys=False, allow_nan=False, default=str)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def panorama_manifest(
    *,
    width: int,
    height: int,
    frames: int,
    fps: float | None,
    loop: bool,
    yaw_degrees: float = 0.0,
    **how: Any,
) -> dict[str, Any]:
    """The manifest of a panorama output folder: the contract fields, then how it was made."""
    return {
        "kind": KIND_PANORAMA,
        "projection": "equirectangular",
        "orientation": dict(ORIENTATION),
        "yaw_degrees": float(yaw_degrees),
        "width": int(width),
        "height": int(height),
        "frames": int(frames),
        "fps": fps,
        "loop": bool(loop),
        "frames_dir": FRAMES_DIR,
        **how,
    }


# --------------------------------------------------------------------------- checks


def check_output_free(path: str | os.PathLike[str]) -> Path:
    """Refuse an output path that exists (nothing is overwritten) or cannot be created.

    The name must be a visible new folder name in valid UTF-8; the parent must be a
    folder this process may write into — a file in the way, a read-only disk or a
    missing folder is named in one line.
    """
    problem = path_problem(os.fspath(path))
    if problem:
        raise BadInput(f"output '{shown_path(path)}' {problem}")
    path = Path(path)
    if not path.name or path.name in (".", ".."):
        raise BadInput(f"output {path} must name a new folder")
    if path.name.startswith("."):
        raise BadInput(f"output {path} is a hidden name; choose a name without a leading dot")
    if path.exists() or path.is_symlink():
        raise BadInput(
            f"output {path} already exists; choose a new folder (PanoLoop never overwrites)"
        )
    parent = path.parent
    if not parent.exists():
        blocker = next((p for p in parent.parents if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise BadInput(f"cannot write output {path}: {blocker} is a file, not a folder")
        raise BadInput(f"parent folder of output {path} does not exist")
    if not parent.is_dir():
        raise BadInput(f"cannot write output {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        reason = "its disk is mounted read-only" if _read_only(parent) else "permission denied"
        raise BadInput(f"cannot write output {path}: {reason}", "choose another output folder")
    return path


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # Windows has no statvfs
        return False


def check_frame_range(start: int, end: int, loop_frames: int | None) -> None:
    """Refuse a Blender frame range that is empty or, when a loop plays, is not exactly
    one loop long (frame ``start + n`` must be loop frame ``n`` for every camera)."""
    count = end - start + 1
    if count < 1:
        raise BadInput(f"frame range {start}-{end} is empty")
    if loop_frames is not None and count != loop_frames:
        raise BadInput(
            f"frame range {start}-{end} is {count} frames but the loop has {loop_frames}",
            f"set the scene's frame range to {start}-{start + loop_frames - 1}",
        )


# --------------------------------------------------------------------------- atomic folder


def partial_prefix(final: Path) -> str:
    """The name prefix of ``final``'s temporary siblings: ``.NAME.partial-``."""
    return f".{final.name}.partial-"


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_partial_dir(final: Path) -> Path:
    """A new hidden sibling ``.NAME.partial-PID-XXXX`` of ``final``, honouring the umask."""
    for _ in range(100):
        tmp = final.parent / f"{partial_prefix(final)}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir(mode=0o777)  # the umask applies, as for any folder the user makes
        except FileExistsError:
            continue
        return tmp
    raise PanoLoopError(f"could not create a temporary folder beside {final}")


def _libc_rename_noreplace() -> Callable[[str, str], int] | None:
    """renameat2(RENAME_NOREPLACE) on Linux, renamex_np(RENAME_EXCL) on macOS, else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        at_fdcwd, rename_noreplace = -100, 1
        libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p] * 2 + [ctypes.c_uint]

        def call(src: str, dst: str) -> int:
            return libc.renameat2(
                at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), rename_noreplace
            )

        return call
    if sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        rename_excl = 0x4
        libc.renamex_np.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        return lambda src, dst: libc.renamex_np(os.fsencode(src), os.fsencode(dst), rename_excl)
    return None


def rename_noreplace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rename ``src`` to ``dst``; :class:`FileExistsError` if ``dst`` exists, even empty.

    Linux and macOS use the kernel's no-replace rename, atomic against a folder made at
    ``dst`` at the same moment. Windows' rename never replaces. Elsewhere (or on a file
    system without the flag) the fallback checks first and renames: a folder created in
    the microseconds between the two could be replaced only if it is empty, since a
    POSIX rename never replaces a folder that holds files.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    call = _libc_rename_noreplace() if sys.platform != "win32" else None
    if call is not None:
        if call(src, dst) == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST or code == errno.ENOTEMPTY:
            raise FileExistsError(code, os.strerror(code), dst)
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), dst)
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
    os.rename(src, dst)


#: Inside a temporary output folder: locked by its owner for as long as it runs.
OWNER_LOCK = ".panoloop-owner"
#: A temporary folder with neither a lock nor a pid in its name (older versions) is stale
#: after this many seconds.
UNOWNED_STALE_S = 24 * 3600


@contextlib.contextmanager
def atomic_output_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling folder that becomes ``final`` only if the block succeeds.

    On any exception (a cancel, SIGTERM or a full disk included) the temporary folder is
    removed, so a failed or interrupted job leaves nothing behind; on success it is
    renamed into place whole, never over something that appeared at ``final`` while the
    job ran. A process killed outright (SIGKILL, power loss) cannot clean up: its folder
    keeps an owner lock nobody holds, and the next job writing into the same parent
    folder sweeps it (:func:`sweep_stale_partials`). A full disk or a read-only one
    becomes :class:`Unwritable`, naming the path as the user knows it.
    """
    final = check_output_free(final)
    sweep_stale_partials(final.parent)
    try:
        tmp = make_partial_dir(final)
    except OSError as exc:
        raise (unwritable(exc, final) or exc) from exc
    try:
        lock = OwnerLock(tmp)
    except OSError as exc:
        _remove_tree(tmp)
        raise (unwritable(exc, final) or exc) from exc
    try:
        yield tmp
        lock.release()
        try:
            rename_noreplace(tmp, final)
        except FileExistsError:
            raise PanoLoopError(
                f"output {final} appeared while the job ran; kept it, removed ours"
            ) from None
    except BaseException as exc:
        lock.release()
        _remove_tree(tmp)
        if isinstance(exc, OSError):
            raise (unwritable(_as_final(exc, tmp, final), final) or exc) from exc
        raise


def _remove_tree(folder: Path, attempts: int = 5) -> None:
    """Remove ``folder``; try again briefly if a straggling writer recreated a file in it."""
    for attempt in range(attempts):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        time.sleep(0.02 * (attempt + 1))


def _as_final(exc: OSError, tmp: Path, final: Path) -> OSError:
    """The error with its file named as the user will know it (inside ``final``)."""
    name = exc.filename
    if isinstance(name, str) and name.startswith(str(tmp)):
        exc.filename = str(final) + name[len(str(tmp)) :]
    return exc


class OwnerLock:
    """An advisory lock file inside a temporary output folder, held while the job runs.

    The kernel drops the lock when its process dies, however it dies, so a sweeper can
    tell a live job's folder from a dead one's without trusting pids (which are reused).
    Released (file removed, then closed) just before the folder is renamed into place.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / OWNER_LOCK
        self._fh: Any = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (held)
        _lock(self._fh.fileno(), blocking=True)
        self._fh.write(f"{os.getpid()} {socket.gethostname()}\n")
        self._fh.flush()

    def release(self) -> None:
        if self._fh is None:
            return
        # Remove before unlocking: a sweeper that gets the lock then finds no file, and
        # knows the owner is finishing rather than dead.
        with contextlib.suppress(OSError):
            self.path.unlink()
        self._fh.close()
        self._fh = None


def _lock(fd: int, *, blocking: bool) -> bool:
    """Take an exclusive lock on ``fd``; False if another process holds it (non-blocking)."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_LOCK if blocking else msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False


def sweep_stale_partials(parent: str | os.PathLike[str]) -> list[Path]:
    """Remove temporary output folders in ``parent`` whose job is gone; returns them.

    A folder is stale when its owner lock can be taken (its process died, even by
    SIGKILL), or when it has no lock and the pid in its name is not running, or, for a
    folder with neither, when it is older than :data:`UNOWNED_STALE_S`. A live job's
    folder is never touched.
    """
    swept: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return swept
    for entry in entries:
        if not (entry.name.startswith(".") and ".partial-" in entry.name):
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        folder = Path(entry.path)
        if _partial_is_stale(folder):
            shutil.rmtree(folder, ignore_errors=True)
            swept.append(folder)
    return swept


def _partial_is_stale(folder: Path) -> bool:
    lock_path = folder / OWNER_LOCK
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return _unlocked_partial_is_stale(folder)
    except OSError:
        return False
    try:
        if not _lock(fd, blocking=False):
            return False  # its owner is running
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False  # the owner removed it: it is renaming the folder into place
        with open(fd, encoding="utf-8", closefd=False) as fh:
            host = (fh.read(256).split() + ["", ""])[1]
        return same and host in ("", socket.gethostname())
    finally:
        os.close(fd)


def _unlocked_partial_is_stale(folder: Path) -> bool:
    match = re.search(r"\.partial-(\d+)-", folder.name)
    if match is None:
        try:
            return time.time() - folder.stat().st_mtime > UNOWNED_STALE_S
        except OSError:
            return False
    return not _pid_running(int(match.group(1)))


def _pid_running(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows' os.kill(pid, 0) sends CTRL_C_EVENT
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError included: it exists
        return True
    return True
