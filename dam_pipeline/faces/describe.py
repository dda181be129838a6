"""Faces in a photo: where each is, a 128-number descriptor of who it is, a small crop and a
quality figure.

The boxes come from the BlazeFace detector the captioner already uses
(``captioning.people``); each face is aligned with dlib's 5-point landmark model and
described by dlib's ResNet face descriptor (both files ship in the
``face-recognition-models`` wheel; its 68-point model, whose training data excludes
commercial use, is never loaded). Two descriptors of one person are usually within 0.6 of
each other (Euclidean), of two people beyond it.
"""

from __future__ import annotations

import importlib.util
import io
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageFilter

from dam_pipeline.captioning.people import NMS_OVERLAP, Detection, PeopleDetector, overlap

MODEL_PACKAGE = "face_recognition_models"
LANDMARKS_MODEL = "models/shape_predictor_5_face_landmarks.dat"
DESCRIPTOR_MODEL = "models/dlib_face_recognition_resnet_model_v1.dat"
FACE_MODEL_VERSION = "blazeface-full-tiled+dlib-5pt+resnet-v1/2"
"""Changes when the detector, the landmarks, the descriptor or how they are used change:
faces are described again (and only faces)."""
MIN_FACE_PIXELS = 40
"""Faces smaller than this (the box's shorter side in the normalized image) are skipped:
the descriptor is unreliable on them."""
MAX_FACES = 20
"""At most this many faces per photo, the largest first; the rest are counted as capped."""
CHIP_SIDE = 96
TILE_BELOW = 0.2
"""The quarters are searched when the largest face found is narrower than this share of the
photo (a group, not a portrait)."""
TILE_SHARE = 0.6
"""Each quarter searched again covers 60% of the photo's width and height (they overlap, so
a face on a border is whole in one of them)."""


@dataclass(frozen=True)
class FoundFace:
    box: tuple[float, float, float, float]
    """left, top, right, bottom as fractions of the image's width and height."""
    descriptor: np.ndarray
    """128 float32 numbers; faces of one person lie close together (Euclidean)."""
    size: int
    """The box's shorter side in pixels of the normalized image."""
    sharpness: float
    """The variance of the Laplacian of the face crop (higher is sharper)."""
    score: float
    """The detector's confidence."""
    chip: bytes
    """A ``CHIP_SIDE`` JPEG of the face, for people views."""


@dataclass(frozen=True)
class FacesInPhoto:
    faces: list[FoundFace]
    skipped_small: int = 0
    """Faces under ``MIN_FACE_PIXELS``."""
    capped: int = 0
    """Faces beyond ``MAX_FACES`` (the smallest)."""


class FaceDescriber(Protocol):
    """Finds and describes the faces of one image."""

    version: str

    def faces(self, image: Image.Image) -> FacesInPhoto: ...


def face_models_folder() -> Path | None:
    spec = importlib.util.find_spec(MODEL_PACKAGE)  # finds the folder, runs nothing
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / LANDMARKS_MODEL).exists() or not (folder / DESCRIPTOR_MODEL).exists():
        return None
    return folder


def face_models_available() -> bool:
    return face_models_folder() is not None and importlib.util.find_spec("dlib") is not None


_DETECTOR: PeopleDetector | None = None


def _shared_detector() -> PeopleDetector:
    """One BlazeFace per process (its interpreters take a moment to load)."""
    global _DETECTOR
    with _MODELS_LOCK:
        if _DETECTOR is None:
            _DETECTOR = PeopleDetector()
        return _DETECTOR


_MODELS: tuple | None = None
_MODELS_LOCK = threading.Lock()


def _face_models() -> tuple:
    """dlib's landmark and descriptor models, loaded once per process (about a second)."""
    global _MODELS
    with _MODELS_LOCK:
        if _MODELS is None:
            folder = face_models_folder()
            if folder is None or importlib.util.find_spec("dlib") is None:
                raise RuntimeError(
                    "Faces need dlib-bin and face-recognition-models (make setup installs "
                    "them); or set DAM_FACES=false."
                )
            import dlib

            _MODELS = (
                dlib.shape_predictor(str(folder / LANDMARKS_MODEL)),
                dlib.face_recognition_model_v1(str(folder / DESCRIPTOR_MODEL)),
                dlib.rectangle,
            )
        return _MODELS


class DlibFaceDescriber:
    """BlazeFace boxes, dlib's 5-point alignment and ResNet descriptor."""

    version = FACE_MODEL_VERSION

    def __init__(
        self,
        detector: PeopleDetector | None = None,
        min_face_pixels: int = MIN_FACE_PIXELS,
        max_faces: int = MAX_FACES,
    ) -> None:
        self.detector = detector or _shared_detector()
        self.min_face_pixels, self.max_faces = min_face_pixels, max_faces

    def _load(self) -> tuple:
        return _face_models()

    def load(self) -> None:
        _face_models()

    def faces(self, image: Image.Image) -> FacesInPhoto:
        image = image.convert("RGB")
        width, height = image.size
        boxes = []
        for found in self._detect(image):
            left, top, right, bottom = found.box
            size = int(min((right - left) * width, (bottom - top) * height))
            boxes.append((size, found))
        small = sum(1 for size, _ in boxes if size < self.min_face_pixels)
        usable = sorted((b for b in boxes if b[0] >= self.min_face_pixels), key=lambda b: -b[0])
        capped = max(0, len(usable) - self.max_faces)
        if not usable:  # most photos: dlib is not even loaded
            return FacesInPhoto(faces=[], skipped_small=small, capped=0)
        landmarks, describe, rectangle = self._load()
        pixels = np.asarray(image)
        faces = []
        for size, found in usable[: self.max_faces]:
            left, top, right, bottom = found.box
            rect = rectangle(
                round(left * width), round(top * height), round(right * width),
                round(bottom * height),
            )  # fmt: skip
            shape = landmarks(pixels, rect)
            descriptor = np.asarray(describe.compute_face_descriptor(pixels, shape), np.float32)
            crop = image.crop((rect.left(), rect.top(), rect.right(), rect.bottom()))
            faces.append(
                FoundFace(
                    box=found.box,
                    descriptor=descriptor,
                    size=size,
                    sharpness=_sharpness(crop),
                    score=found.score,
                    chip=_chip(image, found.box),
                )
            )
        return FacesInPhoto(faces=faces, skipped_small=small, capped=capped)

    def _detect(self, image: Image.Image) -> list[Detection]:
        """Faces in the whole photo; where there is one, in its four overlapping quarters
        too: the detector sees its input at 192 px, so the faces of a group a few metres
        away are found only closer up."""
        found = self.detector.detect_faces(image)
        if not found or max(f.box[2] - f.box[0] for f in found) >= TILE_BELOW:
            return found  # most photos, and close-ups: one pass
        width, height = image.size
        for x in (0.0, 1.0 - TILE_SHARE):
            for y in (0.0, 1.0 - TILE_SHARE):
                tile = image.crop((round(x * width), round(y * height),
                                   round((x + TILE_SHARE) * width),
                                   round((y + TILE_SHARE) * height)))  # fmt: skip
                for face in self.detector.detect_faces(tile):
                    left, top, right, bottom = face.box
                    box = (x + left * TILE_SHARE, y + top * TILE_SHARE,
                           x + right * TILE_SHARE, y + bottom * TILE_SHARE)  # fmt: skip
                    found.append(replace(face, box=tuple(round(v, 4) for v in box)))
        kept: list[Detection] = []
        for face in sorted(found, key=lambda d: -d.score):
            if all(not _same_face(face.box, k.box) for k in kept):
                kept.append(face)
        return kept


def _same_face(a: tuple, b: tuple) -> bool:
    """Boxes that overlap, or one mostly inside the other (a face cut by a tile's edge)."""
    if overlap(np.array(a), np.array(b)) >= NMS_OVERLAP:
        return True
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return smaller > 0 and width * height / smaller > 0.5


def _sharpness(crop: Image.Image) -> float:
    grey = crop.convert("L").resize((64, 64))
    edges = np.asarray(grey.filter(ImageFilter.FIND_EDGES), dtype=np.float32)[1:-1, 1:-1]
    return round(float(edges.var()), 1)


def _chip(image: Image.Image, box: tuple[float, float, float, float]) -> bytes:
    """A square crop around the face with some margin, ``CHIP_SIDE`` pixels."""
    width, height = image.size
    left, top, right, bottom = box
    cx, cy = (left + right) / 2 * width, (top + bottom) / 2 * height
    half = max((right - left) * width, (bottom - top) * height) * 0.8
    crop = image.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
    crop = crop.resize((CHIP_SIDE, CHIP_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    crop.save(out, format="JPEG", quality=85)
    return out.getvalue()
