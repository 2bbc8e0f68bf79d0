"""Spherical video metadata in MP4 files: our own ISO-BMFF box writer and reader.

Players learn that an MP4 is a 360° video from boxes that encoders do not write
(ffmpeg keeps them on remux only with ``-strict unofficial`` and never creates them),
so we add them after encoding:

- **Spherical Video V2** (Google's spec, read by YouTube, Quest, ffmpeg): inside the
  video sample entry (``avc1``/``hvc1``): ``st3d`` (stereo mode) and ``sv3d`` holding
  ``svhd`` (metadata source string) and ``proj`` › ``prhd`` (yaw/pitch/roll, 16.16
  fixed-point degrees) + ``equi`` (four 0.32 fixed-point crop bounds; 0 = uncropped).
- **Spherical Video V1**: RDF/XML in a ``uuid`` box (``ffcc8263-f855-4a93-8814-
  587a02521fdd``) inside the video ``trak``, for players that read only V1.

Growing ``moov`` moves everything after it, so when ``moov`` precedes ``mdat`` (ffmpeg's
``+faststart``) every chunk offset (``stco``/``co64``) pointing past it is shifted by the
growth; an ``stco`` that would overflow 32 bits becomes a ``co64``. Only ``moov`` is held in
memory; ``mdat`` is copied in blocks. Files are written to a temporary sibling and
renamed into place.

Orientation: the panorama is stored in Blender's equirect convention (centre column =
Blender +X, row 0 = +Z). Spherical-video players put the centre column straight ahead,
so a viewer starts out looking along Blender's +X, with yaw recorded in ``prhd``.
"""

from __future__ import annotations

import os
import struct
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from xml.etree import ElementTree

from ..errors import BadInput, PanoLoopError

StereoMode = Literal["mono", "top-bottom", "left-right"]
#: st3d ``stereo_mode`` values (Spherical Video V2): 0 mono, 1 top-bottom (left eye on
#: top), 2 left-right (left eye on the left).
STEREO_CODES: dict[str, int] = {"mono": 0, "top-bottom": 1, "left-right": 2}
#: The V1 box's user type and the XML namespaces it uses.
SPHERICAL_V1_UUID = uuid.UUID("ffcc8263-f855-4a93-8814-587a02521fdd")
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
GSPHERICAL_NS = "http://ns.google.com/videos/1.0/spherical/"
METADATA_SOURCE = "PanoLoop spherical metadata writer"

#: Boxes we descend into, with the bytes of fixed fields before their child boxes:
#: ``stsd`` has version/flags + entry count; a visual sample entry has 78 bytes of
#: VisualSampleEntry fields (ISO/IEC 14496-12 §12.1.3).
CONTAINERS: dict[bytes, int] = {
    b"moov": 0,
    b"trak": 0,
    b"mdia": 0,
    b"minf": 0,
    b"stbl": 0,
    b"edts": 0,
    b"dinf": 0,
    b"stsd": 8,
    b"avc1": 78,
    b"avc3": 78,
    b"hvc1": 78,
    b"hev1": 78,
    b"sv3d": 0,
    b"proj": 0,
}
VIDEO_SAMPLE_ENTRIES = (b"avc1", b"avc3", b"hvc1", b"hev1")
COPY_BLOCK = 8 << 20


@dataclass
class Box:
    """One ISO-BMFF box: a leaf with ``payload`` or a container with ``prefix`` + children."""

    kind: bytes
    payload: bytes = b""
    children: list[Box] | None = None

    def serialize(self) -> bytes:
        body = self.payload
        if self.children is not None:
            body = self.payload + b"".join(child.serialize() for child in self.children)
        size = 8 + len(body)
        if size > 0xFFFFFFFF:
            return struct.pack(">I4sQ", 1, self.kind, size + 8) + body
        return struct.pack(">I4s", size, self.kind) + body

    def find(self, kind: bytes) -> list[Box]:
        """Direct children of type ``kind``."""
        return [c for c in (self.children or []) if c.kind == kind]

    def first(self, kind: bytes) -> Box | None:
        found = self.find(kind)
        return found[0] if found else None


@dataclass
class SphericalInfo:
    """What a file says about itself: V2 boxes and V1 XML, as parsed back."""

    stereo_mode: str | None = None
    projection: str | None = None
    metadata_source: str | None = None
    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None
    bounds: tuple[float, float, float, float] | None = None
    v1: dict[str, str] = field(default_factory=dict)
    boxes: list[str] = field(default_factory=list)

    @property
    def has_v2(self) -> bool:
        return self.projection is not None and self.stereo_mode is not None

    @property
    def has_v1(self) -> bool:
        return self.v1.get("Spherical", "").lower() == "true"


# --------------------------------------------------------------------------- parsing


def _iter_boxes(data: bytes, start: int, end: int, where: str) -> list[tuple[bytes, int, int]]:
    """(type, payload start, box end) for each box in ``data[start:end]``."""
    found = []
    pos = start
    while pos < end:
        if end - pos < 8:
            raise BadInput(f"{where}: truncated box header at byte {pos}")
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise BadInput(f"{where}: box {kind!r} at byte {pos} has impossible size {size}")
        found.append((kind, pos + header, pos + size))
        pos += size
    return found


def parse_box(kind: bytes, data: bytes, start: int, end: int, where: str) -> Box:
    """Parse one box's payload ``data[start:end]``, descending into known containers."""
    if kind not in CONTAINERS:
        return Box(kind, payload=data[start:end])
    prefix = CONTAINERS[kind]
    if end - start < prefix:
        raise BadInput(f"{where}: box {kind!r} is shorter than its fixed fields")
    children = [
        parse_box(k, data, s, e, where) for k, s, e in _iter_boxes(data, start + prefix, end, where)
    ]
    return Box(kind, payload=data[start : start + prefix], children=children)


def top_level_boxes(path: Path) -> list[tuple[bytes, int, int, int]]:
    """(type, box start, header size, box end) of every top-level box of the file."""
    size_total = path.stat().st_size
    boxes = []
    with open(path, "rb") as f:
        pos = 0
        while pos < size_total:
            f.seek(pos)
            head = f.read(16)
            if len(head) < 8:
                raise BadInput(f"{path} is not an MP4: truncated box at byte {pos}")
            size, kind = struct.unpack_from(">I4s", head)
            header = 8
            if size == 1:
                (size,) = struct.unpack_from(">Q", head, 8)
                header = 16
            elif size == 0:
                size = size_total - pos
            if size < header or pos + size > size_total:
                raise BadInput(f"{path} is not a valid MP4: box {kind!r} at byte {pos}")
            boxes.append((kind, pos, header, pos + size))
            pos += size
    kinds = [b[0] for b in boxes]
    if b"moov" not in kinds or b"ftyp" not in kinds:
        raise BadInput(f"{path} is not an MP4 (no ftyp/moov box)")
    return boxes


def read_moov(path: Path) -> tuple[Box, int, int]:
    """The parsed ``moov`` box, its start offset and its end offset in the file."""
    for kind, start, header, end in top_level_boxes(path):
        if kind == b"moov":
            with open(path, "rb") as f:
                f.seek(start)
                raw = f.read(end - start)
            return parse_box(b"moov", raw, header, len(raw), str(path)), start, end
    raise BadInput(f"{path} has no moov box")  # unreachable: top_level_boxes checked


def _handler(trak: Box) -> bytes:
    mdia = trak.first(b"mdia")
    hdlr = mdia.first(b"hdlr") if mdia else None
    # FullBox: version/flags (4), pre_defined (4), handler_type (4).
    return hdlr.payload[8:12] if hdlr and len(hdlr.payload) >= 12 else b""


def video_tracks(moov: Box) -> list[Box]:
    """The ``trak`` boxes whose handler is ``vide``."""
    return [t for t in moov.find(b"trak") if _handler(t) == b"vide"]


def _sample_entries(trak: Box) -> list[Box]:
    stbl = _descend(trak, (b"mdia", b"minf", b"stbl"))
    stsd = stbl.first(b"stsd") if stbl else None
    return list(stsd.children or []) if stsd else []


def _descend(box: Box | None, path: tuple[bytes, ...]) -> Box | None:
    for kind in path:
        if box is None:
            return None
        box = box.first(kind)
    return box


# --------------------------------------------------------------------------- building boxes


def _full_box(kind: bytes, body: bytes, version: int = 0, flags: int = 0) -> Box:
    return Box(kind, payload=struct.pack(">I", (version << 24) | flags) + body)


def _fixed_16_16(degrees: float) -> int:
    return int(round(degrees * 65536))


def st3d_box(stereo: StereoMode) -> Box:
    """``st3d``: FullBox + uint8 stereo_mode."""
    return _full_box(b"st3d", struct.pack(">B", STEREO_CODES[stereo]))


def sv3d_box(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> Box:
    """``sv3d`` › ``svhd`` + ``proj`` › (``prhd``, ``equi`` uncropped)."""
    svhd = _full_box(b"svhd", METADATA_SOURCE.encode("utf-8") + b"\0")
    prhd = _full_box(b"prhd", struct.pack(">iii", *(_fixed_16_16(a) for a in (yaw, pitch, roll))))
    equi = _full_box(b"equi", struct.pack(">IIII", 0, 0, 0, 0))
    proj = Box(b"proj", children=[prhd, equi])
    return Box(b"sv3d", children=[svhd, proj])


def v1_xml(stereo: StereoMode, software: str = METADATA_SOURCE) -> bytes:
    """The Spherical Video V1 RDF/XML document."""
    fields = {
        "Spherical": "true",
        "Stitched": "true",
        "StitchingSoftware": software,
        "ProjectionType": "equirectangular",
    }
    if stereo != "mono":
        fields["StereoMode"] = stereo
    inner = "".join(f"<GSpherical:{k}>{v}</GSpherical:{k}>" for k, v in fields.items())
    return (
        '<?xml version="1.0"?>'
        f'<rdf:SphericalVideo xmlns:rdf="{RDF_NS}" xmlns:GSpherical="{GSPHERICAL_NS}">'
        f"{inner}</rdf:SphericalVideo>"
    ).encode()


def v1_box(stereo: StereoMode) -> Box:
    return Box(b"uuid", payload=SPHERICAL_V1_UUID.bytes + v1_xml(stereo))


# --------------------------------------------------------------------------- injecting


def inject_spherical(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    stereo: StereoMode = "mono",
    yaw: float = 0.0,
    pitch: float = 0.0,
    roll: float = 0.0,
) -> Path:
    """Copy MP4 ``src`` to new file ``dst`` with V2 and V1 spherical metadata in its video track.

    Existing spherical boxes are replaced. ``yaw``/``pitch``/``roll`` are degrees (the
    pose of the panorama relative to the viewer's default view). ``dst`` must not exist.
    """
    src, dst = Path(src), Path(dst)
    if stereo not in STEREO_CODES:
        raise BadInput(f"stereo mode {stereo!r} is not one of {sorted(STEREO_CODES)}")
    if dst.exists():
        raise BadInput(f"output {dst} already exists; PanoLoop never overwrites")
    if not src.is_file():
        raise BadInput(f"video not found: {src}")
    boxes = top_level_boxes(src)
    moov, moov_start, moov_end = read_moov(src)
    tracks = video_tracks(moov)
    if not tracks:
        raise BadInput(f"{src} has no video track")
    for trak in tracks:
        _tag_track(trak, src, stereo, (yaw, pitch, roll))
    new_moov = _moov_with_offsets(moov, moov_start, moov_end)
    _write_replacing_moov(src, dst, boxes, new_moov)
    return dst


def _tag_track(trak: Box, src: Path, stereo: StereoMode, pose: tuple[float, ...]) -> None:
    entries = [e for e in _sample_entries(trak) if e.kind in VIDEO_SAMPLE_ENTRIES]
    if not entries:
        kinds = [e.kind.decode("latin-1") for e in _sample_entries(trak)]
        raise BadInput(f"{src}: video codec {kinds} is not H.264/H.265; cannot tag it")
    for entry in entries:
        kept = [c for c in entry.children or [] if c.kind not in (b"st3d", b"sv3d")]
        entry.children = kept + [st3d_box(stereo), sv3d_box(*pose)]
    trak.children = [
        c
        for c in trak.children or []
        if not (c.kind == b"uuid" and c.payload[:16] == SPHERICAL_V1_UUID.bytes)
    ] + [v1_box(stereo)]


def _chunk_offset_boxes(moov: Box) -> list[Box]:
    found = []
    for trak in moov.find(b"trak"):
        stbl = _descend(trak, (b"mdia", b"minf", b"stbl"))
        for child in (stbl.children or []) if stbl else []:
            if child.kind in (b"stco", b"co64"):
                found.append(child)
    return found


def _moov_with_offsets(moov: Box, old_start: int, old_end: int) -> bytes:
    """Serialize ``moov``, shifting chunk offsets that lie after it by its growth.

    Converting an ``stco`` to ``co64`` grows ``moov`` again, so iterate until stable.
    """
    originals = {id(b): _read_offsets(b) for b in _chunk_offset_boxes(moov)}
    grown = 0
    for _ in range(4):
        for box in _chunk_offset_boxes(moov):
            shifted = [o + grown if o >= old_end else o for o in originals[id(box)]]
            _write_offsets(box, shifted)
        data = moov.serialize()
        new_grown = old_start + len(data) - old_end
        if new_grown == grown:
            return data
        grown = new_grown
    raise PanoLoopError("chunk offsets did not settle while growing moov")  # pragma: no cover


def _read_offsets(box: Box) -> list[int]:
    (count,) = struct.unpack_from(">I", box.payload, 4)
    fmt = ">%dI" if box.kind == b"stco" else ">%dQ"
    return list(struct.unpack_from(fmt % count, box.payload, 8))


def _write_offsets(box: Box, offsets: list[int]) -> None:
    if box.kind == b"stco" and offsets and max(offsets) > 0xFFFFFFFF:
        box.kind = b"co64"
    fmt = ">%dI" if box.kind == b"stco" else ">%dQ"
    box.payload = (
        box.payload[:4]
        + struct.pack(">I", len(offsets))
        + struct.pack(fmt % len(offsets), *offsets)
    )


def _write_replacing_moov(
    src: Path, dst: Path, boxes: list[tuple[bytes, int, int, int]], new_moov: bytes
) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.partial-", dir=dst.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            for kind, start, _header, end in boxes:
                if kind == b"moov":
                    out.write(new_moov)
                    continue
                inp.seek(start)
                _copy_range(inp, out, end - start)
        if dst.exists():
            raise BadInput(f"output {dst} appeared while writing; kept it")
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _copy_range(inp: object, out: object, length: int) -> None:
    remaining = length
    while remaining:
        block = inp.read(min(COPY_BLOCK, remaining))  # type: ignore[attr-defined]
        if not block:
            raise PanoLoopError("source video ended early while copying")
        out.write(block)  # type: ignore[attr-defined]
        remaining -= len(block)


# --------------------------------------------------------------------------- reading back


def read_spherical(path: str | os.PathLike[str]) -> SphericalInfo:
    """Parse the spherical metadata of an MP4's first video track (V2 boxes and V1 XML)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"video not found: {path}")
    moov, _, _ = read_moov(path)
    info = SphericalInfo()
    tracks = video_tracks(moov)
    if not tracks:
        return info
    trak = tracks[0]
    for entry in _sample_entries(trak):
        if entry.kind not in VIDEO_SAMPLE_ENTRIES:
            continue
        for child in entry.children or []:
            if child.kind != b"sv3d":
                info.boxes.append(child.kind.decode("latin-1"))
            if child.kind == b"st3d":
                code = child.payload[4]
                names = {v: k for k, v in STEREO_CODES.items()}
                info.stereo_mode = names.get(code, f"unknown({code})")
            elif child.kind == b"sv3d":
                _read_sv3d(child, info)
    for child in trak.children or []:
        if child.kind == b"uuid" and child.payload[:16] == SPHERICAL_V1_UUID.bytes:
            info.boxes.append("uuid:spherical-v1")
            info.v1 = _parse_v1(child.payload[16:], path)
    return info


def _read_sv3d(sv3d: Box, info: SphericalInfo) -> None:
    info.boxes.append("sv3d")
    svhd = sv3d.first(b"svhd")
    if svhd:
        info.boxes.append("svhd")
        info.metadata_source = svhd.payload[4:].split(b"\0", 1)[0].decode("utf-8", "replace")
    proj = sv3d.first(b"proj")
    if not proj:
        return
    info.boxes.append("proj")
    prhd = proj.first(b"prhd")
    if prhd:
        info.boxes.append("prhd")
        yaw, pitch, roll = struct.unpack_from(">iii", prhd.payload, 4)
        info.yaw, info.pitch, info.roll = yaw / 65536, pitch / 65536, roll / 65536
    equi = proj.first(b"equi")
    if equi:
        info.boxes.append("equi")
        info.projection = "equirectangular"
        raw = struct.unpack_from(">IIII", equi.payload, 4)
        info.bounds = tuple(b / 2**32 for b in raw)  # type: ignore[assignment]
    elif proj.first(b"cbmp"):
        info.projection = "cubemap"


def _parse_v1(xml: bytes, path: Path) -> dict[str, str]:
    try:
        root = ElementTree.fromstring(xml.rstrip(b"\0"))
    except ElementTree.ParseError as exc:
        raise BadInput(f"{path}: spherical V1 XML is not valid: {exc}") from None
    prefix = "{" + GSPHERICAL_NS + "}"
    return {
        el.tag[len(prefix) :]: (el.text or "")
        for el in root.iter()
        if isinstance(el.tag, str) and el.tag.startswith(prefix)
    }
