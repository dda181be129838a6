"""Split a video into shots and take one keyframe from each, in one streaming pass.

Decoding is PyAV's (FFmpeg inside the wheel). Uploaded bytes only ever reach the demuxers
and decoders listed here: the container is recognised from its first bytes and opened with
that demuxer alone (never FFmpeg's probing, which would also try playlists and devices that
open other files or URLs), and only the allowed codecs are decoded.

Frames are sampled a few times a second, shrunk for PySceneDetect's content detector, and a
cut ends the current shot. Each shot keeps a reference to its most contrasted sampled frame
(not a blank or a fade), which becomes its keyframe when the shot ends: memory holds one
decoded frame per shot in progress, whatever the length or resolution of the video.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import BinaryIO

import numpy as np
from PIL import Image

from dam_pipeline.imaging.normalize import JPEG_QUALITY, DecodedImage, dhash
from dam_pipeline.places.position import video_position
from dam_pipeline.text import format_time

CONTAINERS = {
    "mov": "QuickTime/MP4",
    "matroska": "Matroska/WebM",
    "avi": "AVI",
}
"""The only demuxers uploaded bytes reach (FFmpeg name -> what people call it)."""
CODECS = frozenset(
    {"h264", "hevc", "vp8", "vp9", "av1", "libdav1d", "libvpx", "libvpx-vp9", "mpeg4",
     "mpeg2video", "mjpeg", "prores"}
)  # fmt: skip
"""The only video decoders uploaded bytes reach."""

SAMPLE_FPS = 6.0
"""Frames per second the shot detector looks at (a cut is placed within 1/6 s)."""
DETECT_WIDTH = 160
MIN_SHOT_SECONDS = 0.8
CUT_THRESHOLD = 27.0
"""PySceneDetect's content threshold (its default)."""
BLANK_CONTRAST = 6.0
"""A keyframe whose luma varies less than this (of 255) is blank: black, white or a flat
title card. Blank shots are not indexed, so they never make two videos look alike."""
EDGE_SECONDS = 0.25
"""Keyframes are not taken this close to a cut (fades and cross-dissolves)."""


class VideoError(ValueError):
    """The object cannot be indexed as a video; ``str(error)`` is the reason."""


@dataclass(frozen=True)
class VideoLimits:
    """What one video may cost; over a limit it is quarantined with the reason (or, for
    shots, its last shot runs to the end)."""

    max_minutes: float = 120.0
    max_shots: int = 200
    max_shot_seconds: float = 60.0
    """A longer shot is cut in parts, each with its keyframe (a one-take hour still has
    moments to find)."""
    max_pixels: int = 8192 * 4320
    max_megabytes: int = 8192
    """Largest object copied from a bucket to a temporary file to decode."""


@dataclass(frozen=True)
class Shot:
    index: int
    start_seconds: float
    end_seconds: float
    keyframe: DecodedImage


@dataclass
class VideoShots:
    shots: list[Shot]
    duration_seconds: float
    width: int
    height: int
    container: str
    codec: str
    frames_decoded: int = 0
    blank_shots: int = 0
    notes: list[str] = field(default_factory=list)
    """What was cut short (a truncated file, the shot limit), said once per video."""
    location: dict[str, float] | None = None
    """Where it was filmed, from the container's metadata (ISO 6709)."""


def sniff_container(head: bytes) -> str | None:
    """The demuxer for these first bytes, or None if it is no container we decode."""
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return "mov"
    return None


def extract_shots(file: BinaryIO, max_side: int, limits: VideoLimits) -> VideoShots:
    """Shots and keyframes of the seekable video ``file``; ``VideoError`` with the reason
    if it cannot be indexed."""
    import av

    head = file.read(64)
    file.seek(0)
    if not head:
        raise VideoError("the file is empty (0 bytes)")
    demuxer = sniff_container(head)
    if demuxer is None:
        raise VideoError(
            "not a video in a supported container (MP4/MOV, MKV/WebM, AVI): the first bytes "
            "are of no known video format"
        )
    try:
        container = av.open(file, mode="r", format=demuxer, metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise VideoError(
            f"the {CONTAINERS[demuxer]} container is corrupt ({_brief(exc)})"
        ) from None
    with container:
        stream = _video_stream(container)
        codec = stream.codec_context.name
        if codec not in CODECS:
            raise VideoError(
                f"the {codec} video codec is not supported (H.264, HEVC, VP9, AV1 ...)"
            )
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > limits.max_pixels:
            raise VideoError(
                f"{width}x{height} is over the limit of {limits.max_pixels:,} pixels a frame "
                "(DAM_VIDEO_MAX_PIXELS)"
            )
        declared = _declared_seconds(container, stream)
        if declared is not None and declared > limits.max_minutes * 60:
            raise VideoError(_too_long(declared, limits))
        stream.thread_type = "AUTO"
        cutter = _ShotCutter(max_side, limits)
        notes: list[str] = []
        try:
            for frame in _frames(container, stream):
                if cutter.last_time > limits.max_minutes * 60:
                    raise VideoError(_too_long(cutter.last_time, limits))
                cutter.add(frame)
        except av.error.FFmpegError as exc:
            if not cutter.frames:
                raise VideoError(f"no frame could be decoded ({_brief(exc)})") from None
            notes.append(
                f"decoding stopped at {format_time(cutter.last_time)} ({_brief(exc)}): "
                "the shots before it are indexed"
            )
        if not cutter.frames:
            raise VideoError("the video stream holds no frame that can be decoded")
        ended = cutter.last_time + cutter.frame_seconds
        if not notes and declared is not None and declared - ended > 1.0:
            notes.append(
                f"the frames end at {format_time(ended)} although the file says it lasts "
                f"{format_time(declared)} (truncated?): the shots before it are indexed"
            )
        shots = cutter.finish()
        notes.extend(cutter.notes)
        return VideoShots(
            shots=shots,
            duration_seconds=round(cutter.last_time + cutter.frame_seconds, 3),
            width=width,
            height=height,
            container=CONTAINERS[demuxer],
            codec=codec,
            frames_decoded=cutter.frames,
            blank_shots=cutter.blank_shots,
            notes=notes,
            location=video_position(dict(container.metadata)),
        )


def _video_stream(container):
    videos = [s for s in container.streams.video if s.codec_context is not None]
    if not videos:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise VideoError(f"there is no video stream in the file (it holds {', '.join(kinds)})")
    # the largest picture: phones add small cover images as extra video streams
    return max(videos, key=lambda s: (s.codec_context.width or 0) * (s.codec_context.height or 0))


def _frames(container, stream) -> Iterator:
    """Decoded frames of ``stream`` only (other streams' packets are dropped unread)."""
    for packet in container.demux(stream):
        yield from packet.decode()


def _declared_seconds(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _too_long(seconds: float, limits: VideoLimits) -> str:
    return (
        f"the video is {seconds / 60:.1f} minutes long, over DAM_VIDEO_MAX_MINUTES="
        f"{limits.max_minutes:g}; raise it to index this video"
    )


def _brief(exc: Exception) -> str:
    return str(getattr(exc, "strerror", None) or exc).strip() or type(exc).__name__


class _ShotCutter:
    """Receives every decoded frame in order; cuts shots and keeps one keyframe each."""

    def __init__(self, max_side: int, limits: VideoLimits) -> None:
        from scenedetect.detector import FlashFilter
        from scenedetect.detectors import ContentDetector

        # SUPPRESS: a cut is reported at the frame that shows it, so the frames before it
        # belong to the shot that ends (MERGE would report it later)
        self.detector = ContentDetector(
            threshold=CUT_THRESHOLD,
            min_scene_len=MIN_SHOT_SECONDS,
            filter_mode=FlashFilter.Mode.SUPPRESS,
        )
        self.max_side = max_side
        self.limits = limits
        self.frames = 0
        self.first_time: float | None = None
        self.last_time = 0.0
        self.frame_seconds = 0.04
        self.next_sample = 0.0
        self.shot_start = 0.0
        self.best: tuple[float, object] | None = None
        """(contrast, frame) of the current shot's best keyframe candidate."""
        self.best_early: tuple[float, object] | None = None
        """The same among frames near the cut, used only if the shot has no other."""
        self.shots: list[Shot] = []
        self.blank_shots = 0
        self.notes: list[str] = []
        self.capped = False

    def add(self, frame) -> None:
        seconds = self._seconds(frame)
        self.frames += 1
        if seconds > self.last_time:
            self.frame_seconds = min(seconds - self.last_time, 1.0)
        self.last_time = max(self.last_time, seconds)
        if seconds + 1e-6 < self.next_sample:
            return
        self.next_sample = seconds + 1 / SAMPLE_FPS
        small = _small_bgr(frame)
        contrast = float(small.mean(axis=2).std())
        if (
            self._is_cut(seconds, small)
            or seconds - self.shot_start >= self.limits.max_shot_seconds
        ):
            self._end_shot(seconds)
        self._consider(seconds, contrast, frame)

    def _seconds(self, frame) -> float:
        time = frame.time
        if time is None:  # no timestamps: count frames at an assumed 25 per second
            time = self.frames / 25
        if self.first_time is None:
            self.first_time = time
        return max(0.0, time - self.first_time)

    def _is_cut(self, seconds: float, small: np.ndarray) -> bool:
        from scenedetect.common import FrameTimecode, Timecode

        moment = FrameTimecode(
            Timecode(pts=round(seconds * 1000), time_base=Fraction(1, 1000)), fps=SAMPLE_FPS
        )
        return bool(self.detector.process_frame(moment, small)) and seconds > self.shot_start

    def _consider(self, seconds: float, contrast: float, frame) -> None:
        near_cut = seconds - self.shot_start < EDGE_SECONDS
        slot = "best_early" if near_cut else "best"
        current = getattr(self, slot)
        if current is None or contrast > current[0]:
            setattr(self, slot, (contrast, frame))

    def _end_shot(self, at: float) -> None:
        if self.capped:
            return
        if len(self.shots) + self.blank_shots >= self.limits.max_shots - 1:
            self.capped = True
            self.notes.append(
                f"more than DAM_VIDEO_MAX_SHOTS={self.limits.max_shots} shots: the last one "
                f"runs from {format_time(self.shot_start)} to the end"
            )
            return
        self._close(at)
        self.shot_start = at
        self.best = self.best_early = None

    def _close(self, end: float, keep_blank: bool = False) -> None:
        chosen = self.best or self.best_early
        if chosen is None or end <= self.shot_start:
            return
        contrast, frame = chosen
        if contrast < BLANK_CONTRAST and not keep_blank:
            self.blank_shots += 1
            return
        self.shots.append(
            Shot(
                index=len(self.shots) + self.blank_shots,
                start_seconds=round(self.shot_start, 3),
                end_seconds=round(end, 3),
                keyframe=keyframe_image(frame, self.max_side),
            )
        )

    def finish(self) -> list[Shot]:
        # a video that is blank throughout is still indexed, once
        self._close(self.last_time + self.frame_seconds, keep_blank=not self.shots)
        return self.shots


def _small_bgr(frame) -> np.ndarray:
    """The frame shrunk for the shot detector (BGR, as PySceneDetect expects)."""
    height = max(2, round(DETECT_WIDTH * frame.height / max(1, frame.width)) // 2 * 2)
    return frame.reformat(width=DETECT_WIDTH, height=height, format="bgr24").to_ndarray()


def keyframe_image(frame, max_side: int) -> DecodedImage:
    """The frame as a normalized image: shrunk to ``max_side`` while converting, turned
    upright by the stream's display matrix, JPEG-encoded."""
    scale = min(1.0, max_side / max(frame.width, frame.height, 1))
    width = max(2, math.floor(frame.width * scale / 2) * 2)
    height = max(2, math.floor(frame.height * scale / 2) * 2)
    image: Image.Image = frame.to_image(width=width, height=height)
    rotation = getattr(frame, "rotation", 0) or 0
    if rotation % 360:
        # the display matrix turns the picture counter-clockwise by this many degrees
        image = image.rotate(rotation, expand=True)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY)
    return DecodedImage(
        jpeg=out.getvalue(),
        width=image.width,
        height=image.height,
        original_width=frame.width if rotation % 180 == 0 else frame.height,
        original_height=frame.height if rotation % 180 == 0 else frame.width,
        source_format="video frame",
        dhash=dhash(image),
    )
