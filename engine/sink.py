"""Writing a loop's frames and its preview while the next frames render.

A :class:`FrameSink` takes frames in order from one producer (the renderer) and hands
them to threads: ``writers`` threads write the numbered frame files (EXR compression in
OpenEXR releases the GIL) and one preview thread scales each frame down to the preview's
size (at most :data:`PREVIEW_MAX_WIDTH` wide, averaging scene-linear light), tone-maps
it with the job's :class:`~engine.colour.DisplayTransform` and streams it to ffmpeg.
Both queues are bounded (``depth`` frames), so memory stays bounded: the producer waits
when the writers fall behind.

CPU, not threads, is what a job on a small machine waits for (the threads only overlap
work): a float frame is converted to half floats once, in one compiled pass, into
planes each writer allocates once; DWA frames are quantised at
:data:`~engine.media.DWA_LEVEL`; and the preview is tone-mapped and encoded at its own
size, a quarter of a 2048×1024 frame's pixels (``bench/animate.py`` measures each part;
:meth:`FrameSink.timings` gives the threads' CPU seconds).

Failure and cancel: the first error in any thread stops the sink and is raised to the
producer on its next :meth:`FrameSink.put` (or at :meth:`FrameSink.finish`); leaving the
``with`` block by an exception (a cancel included) stops and joins every thread before
the exception goes on, so the caller's :func:`~engine.media.atomic_output_dir` removes a
folder nobody is writing into any more.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from .colour import DisplayTransform
from .media import (
    DEFAULT_EXR_CODEC,
    PREVIEW_PRESET,
    frame_path,
    open_mp4,
    write_exr,
    write_image,
)
from .progress import JobContext

#: Parts whose CPU seconds (of the sink's own threads) :meth:`FrameSink.timings` reports.
CPU_PARTS = ("write_frames_cpu", "tone_map_cpu", "encode_preview_cpu")
#: Frames waiting in each queue: enough to ride out a slow write, 24 MB each at 2048×1024.
QUEUE_DEPTH = 3
#: Frame-writing threads: two keep up with the renderer on 2–16 cores (bench/animate.py).
WRITER_THREADS = 2
#: Seconds between checks for a failed thread while the producer waits on a full queue.
POLL_S = 0.1
#: Widest preview MP4, pixels: wider frames are scaled down by a whole factor (2048 → 1024).
#: The preview is for looking at the loop; the frames on disk keep the full resolution
#: and the export makes its 360 video from them.
PREVIEW_MAX_WIDTH = 1024


def preview_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of the preview of a ``width``×``height`` frame: divided by the
    smallest whole factor that brings it to at most :data:`PREVIEW_MAX_WIDTH` wide, and
    rounded down to even numbers (H.264's 4:2:0 chroma)."""
    factor = max(1, -(-width // PREVIEW_MAX_WIDTH))
    return max(2, width // factor // 2 * 2), max(2, height // factor // 2 * 2)


def preview_frame(frame: np.ndarray) -> np.ndarray:
    """``frame`` at its preview size: an area average (of scene-linear light for float
    frames, so highlights keep their energy), or the frame itself when it already fits."""
    height, width = frame.shape[:2]
    size = preview_size(width, height)
    if size == (width, height):
        return frame
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


class _Stopped(Exception):
    """Raised inside the preview thread's frame generator when the sink stops early."""


class FrameSink:
    """Numbered frames → ``folder`` and (optionally) an 8-bit preview MP4, in parallel.

    Use as a context manager; call :meth:`put` for frames 0, 1, … in order, then
    :meth:`finish`. ``timings()`` gives the seconds each part spent in its threads.
    """

    def __init__(
        self,
        folder: Path,
        total: int,
        *,
        display: DisplayTransform,
        preview: Path | None = None,
        fps: float = 24.0,
        exr_codec: str = DEFAULT_EXR_CODEC,
        preset: str = PREVIEW_PRESET,
        ctx: JobContext | None = None,
        writers: int = WRITER_THREADS,
        depth: int = QUEUE_DEPTH,
    ) -> None:
        self.folder, self.total, self.display = Path(folder), total, display
        self.preview, self.fps, self.exr_codec, self.preset = preview, fps, exr_codec, preset
        self.ctx = ctx or JobContext()
        self._writes: queue.Queue = queue.Queue(depth)
        self._previews: queue.Queue | None = queue.Queue(depth) if preview else None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._errors: list[BaseException] = []
        self._spent = dict.fromkeys(("write_frames", "tone_map", "encode_preview", "wait"), 0.0)
        # CPU seconds of the sink's own threads (time.thread_time), per part: on a
        # machine whose cores are all busy, CPU is what each part really costs.
        self._spent.update(dict.fromkeys(CPU_PARTS, 0.0))
        self._counts = {"write": 0, "preview": 0}
        self._threads = [
            threading.Thread(target=self._write_loop, name=f"panoloop-write-{i}", daemon=True)
            for i in range(writers)
        ]
        if preview:
            self._threads.append(
                threading.Thread(target=self._preview_loop, name="panoloop-preview", daemon=True)
            )
        self._finished = False
        self._encoder = None

    # ----------------------------------------------------------------- producer side

    def __enter__(self) -> FrameSink:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is not None or not self._finished:
            self._shut_down(stop=True)

    def put(self, index: int, frame: np.ndarray) -> None:
        """Queue frame ``index`` (in order) for writing and the preview; waits when full."""
        start = time.perf_counter()
        if self.preview is not None and self._encoder is None:
            # ffmpeg is spawned here, in the producer's thread, never from the preview
            # thread while the producer may be inside a BLAS call (see media.open_mp4).
            width, height = preview_size(frame.shape[1], frame.shape[0])
            self._encoder = open_mp4(self.preview, width, height, self.fps, preset=self.preset)
        self._put(self._writes, (index, frame))
        if self._previews is not None:
            self._put(self._previews, frame)
        self._add("wait", time.perf_counter() - start)

    def finish(self) -> None:
        """Wait for every frame to be written and the preview to be closed; raise the
        first error any thread met."""
        start = time.perf_counter()
        self._shut_down(stop=False)
        self._add("wait", time.perf_counter() - start)
        self._finished = True
        self._raise_first_error()

    def timings(self) -> dict[str, float]:
        """Seconds spent per part: writing frames and tone mapping / encoding (wall,
        summed over their threads), the producer's waits on full queues and at the end,
        and the CPU seconds of the writer and preview threads (``*_cpu``; ffmpeg's own
        CPU is not included)."""
        with self._lock:
            return {k: round(v, 4) for k, v in self._spent.items()}

    def _put(self, target: queue.Queue, item: object) -> None:
        while True:
            self._raise_first_error()
            try:
                target.put(item, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def _shut_down(self, stop: bool) -> None:
        if stop or self._errors:
            self._stop.set()
            for pending in (self._writes, self._previews):
                _drain(pending)
        for _ in range(sum(t.name.startswith("panoloop-write") for t in self._threads)):
            self._put_sentinel(self._writes)
        if self._previews is not None:
            self._put_sentinel(self._previews)
        for thread in self._threads:
            if thread.is_alive():
                thread.join()

    def _put_sentinel(self, target: queue.Queue) -> None:
        """Queue the end marker; once stopped, drop frames nobody will take any more."""
        while True:
            try:
                target.put(None, timeout=POLL_S)
                return
            except queue.Full:
                if self._stop.is_set():
                    _drain(target)

    def _raise_first_error(self) -> None:
        with self._lock:
            if self._errors:
                raise self._errors[0]

    # ----------------------------------------------------------------- threads

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            self._errors.append(exc)
        self._stop.set()

    def _add(self, part: str, seconds: float, cpu: float | None = None) -> None:
        with self._lock:
            self._spent[part] += seconds
            if cpu is not None:
                self._spent[f"{part}_cpu"] += cpu

    def _count(self, stage: str) -> int:
        with self._lock:
            self._counts[stage] += 1
            return self._counts[stage]

    def _write_loop(self) -> None:
        planes = None
        while True:
            item = self._writes.get()
            if item is None or self._stop.is_set():
                if item is None:
                    return
                continue
            index, frame = item
            try:
                start, cpu = time.perf_counter(), time.thread_time()
                path = frame_path(self.folder, index, frame.dtype)
                if path.suffix == ".exr":
                    # Each writer converts into its own half planes, allocated once.
                    planes = write_exr(path, frame, self.exr_codec, planes)
                else:
                    write_image(path, frame)
                self._add("write_frames", time.perf_counter() - start, time.thread_time() - cpu)
                self.ctx.progress("write", self._count("write"), self.total)
            except BaseException as exc:  # handed to the producer, which raises it
                self._fail(exc)

    def _preview_loop(self) -> None:
        try:
            for shown in self._preview_frames():
                start, cpu = time.perf_counter(), time.thread_time()
                self._encoder.send(np.ascontiguousarray(shown))
                self._add("encode_preview", time.perf_counter() - start, time.thread_time() - cpu)
                self.ctx.progress("preview", self._count("preview"), self.total)
        except _Stopped:
            pass
        except BaseException as exc:
            self._fail(exc)
            _drain(self._previews)
        finally:
            if self._encoder is not None:
                start = time.perf_counter()
                self._encoder.close()  # ffmpeg finishes the file (removed if we failed)
                self._add("encode_preview", time.perf_counter() - start)

    def _preview_frames(self) -> Iterator[np.ndarray]:
        assert self._previews is not None
        while True:
            frame = self._previews.get()
            if frame is None or self._stop.is_set():
                if frame is None and not self._stop.is_set():
                    return
                raise _Stopped
            start, cpu = time.perf_counter(), time.thread_time()
            shown = self.display.to_uint8(preview_frame(frame), threads=1)
            self._add("tone_map", time.perf_counter() - start, time.thread_time() - cpu)
            yield shown


def _drain(pending: queue.Queue | None) -> None:
    """Empty a queue without blocking (frames nobody will write any more)."""
    if pending is None:
        return
    while True:
        try:
            pending.get_nowait()
        except queue.Empty:
            return
