"""People in a photo: MediaPipe's person and face detectors, run offline on the CPU.

ImageNet has no "person" class, so the classifier never says that someone is there; half of
what people ask for in photo libraries is about people. Two small single-shot detectors do:
BlazePose's person detector (224 px) and BlazeFace full range (192 px, faces up to a few
metres away). Both ship inside the ``mediapipe`` 0.10.14 wheel (installed without its
dependencies: only the model files are read, the package is never imported) and run with
the TensorFlow Lite interpreter of ``ai-edge-litert``; about 30 ms an image for both.

Thresholds were chosen on the tuning half of ``coco_dev`` against person counts labelled by
eye (``bench/data/people_labels.json``); the bench reports precision and recall on both
halves. The person detector was trained on one person a frame and finds one or two people
in a crowd, so a count is a lower bound: faces count too, and three or more is "a group".
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger("dam_pipeline")

PERSON_THRESHOLD = 0.7
FACE_THRESHOLD = 0.6
NMS_OVERLAP = 0.3
CLOSE_UP_FACE_AREA = 0.08
"""A single face covering this share of the photo makes it a close-up (a portrait)."""
MODEL_PACKAGE = "mediapipe"
PERSON_MODEL = "modules/pose_detection/pose_detection.tflite"
FACE_MODEL = "modules/face_detection/face_detection_full_range_sparse.tflite"


@dataclass(frozen=True)
class Detection:
    kind: str
    """``person`` or ``face``."""
    score: float
    box: tuple[float, float, float, float]
    """left, top, right, bottom as fractions of the image's width and height."""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "score": round(self.score, 3), "box": [*self.box]}


@dataclass(frozen=True)
class People:
    count: int = 0
    detections: list[Detection] = field(default_factory=list)

    @property
    def close_up(self) -> bool:
        faces = [d for d in self.detections if d.kind == "face"]
        if self.count != 1 or len(faces) != 1:
            return False
        left, top, right, bottom = faces[0].box
        return (right - left) * (bottom - top) >= CLOSE_UP_FACE_AREA

    @property
    def phrase(self) -> str:
        """What the caption says: "a person", "two people", "a group of people", "a close-up
        of a person's face", or nothing."""
        if self.count == 0:
            return ""
        if self.close_up:
            return "a close-up of a person's face"
        if self.count == 1:
            return "a person"
        if self.count == 2:
            return "two people"
        return "a group of people"

    @property
    def tags(self) -> list[str]:
        if self.count == 0:
            return []
        tags = ["person"] if self.count == 1 else ["people"]
        if self.count > 2:
            tags.append("group")
        return [*tags, "face"] if self.close_up else tags

    def to_dict(self) -> dict:
        """The structured record kept with the caption: count and every box with its score."""
        return {"count": self.count, "detections": [d.to_dict() for d in self.detections]}


def _model_folder() -> Path | None:
    spec = importlib.util.find_spec(MODEL_PACKAGE)  # finds the folder, runs nothing
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    return folder if (folder / PERSON_MODEL).exists() and (folder / FACE_MODEL).exists() else None


def people_detection_available() -> bool:
    """Both the model files and the interpreter are installed (nothing is loaded)."""
    return _model_folder() is not None and importlib.util.find_spec("ai_edge_litert") is not None


def _ssd_anchors(size: int, strides: list[int], per_location: list[int]) -> np.ndarray:
    """Anchor centres of MediaPipe's SSD detectors (fixed anchor size 1): cells of each
    stride, ``per_location`` anchors each, in the model's output order."""
    anchors = []
    for stride, count in zip(strides, per_location, strict=True):
        cells = int(np.ceil(size / stride))
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        centres = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], -1).reshape(-1, 2)
        anchors.append(np.repeat(centres, count, axis=0))
    return np.concatenate(anchors).astype(np.float32)


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """The interpreter's C++ side announces its CPU delegate on file descriptor 2 when it
    starts; that line is not for our users."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _SsdDetector:
    """One BlazeFace-style detector: letterboxed input in [-1, 1], boxes decoded from
    anchors, greedy non-maximum suppression."""

    def __init__(
        self,
        path: Path,
        kind: str,
        size: int,
        strides: list[int],
        per_location: list[int],
        threshold: float,
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.kind, self.size, self.threshold = kind, size, threshold
        with _native_stderr_silenced():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
            self.interpreter = Interpreter(model_path=str(path), num_threads=1)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        outputs = self.interpreter.get_output_details()
        self.boxes = next(o["index"] for o in outputs if o["shape"][-1] != 1)
        self.scores = next(o["index"] for o in outputs if o["shape"][-1] == 1)
        self.anchors = _ssd_anchors(size, strides, per_location)

    def __call__(self, image: Image.Image) -> list[Detection]:
        width, height = image.size
        scale = self.size / max(width, height)
        inner_w, inner_h = max(1, round(width * scale)), max(1, round(height * scale))
        pad_x, pad_y = (self.size - inner_w) // 2, (self.size - inner_h) // 2
        canvas = Image.new("RGB", (self.size, self.size))
        canvas.paste(image.convert("RGB").resize((inner_w, inner_h)), (pad_x, pad_y))
        pixels = np.asarray(canvas, dtype=np.float32)[None] / 127.5 - 1.0
        self.interpreter.set_tensor(self.input, pixels)
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.boxes)[0]
        logits = np.clip(self.interpreter.get_tensor(self.scores)[0, :, 0], -80, 80)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = scores >= self.threshold
        raw, scores, anchors = raw[keep], scores[keep], self.anchors[keep]
        centre_x = raw[:, 0] / self.size + anchors[:, 0]
        centre_y = raw[:, 1] / self.size + anchors[:, 1]
        half_w, half_h = raw[:, 2] / self.size / 2, raw[:, 3] / self.size / 2
        # from the letterboxed square back to fractions of the image
        left = ((centre_x - half_w) * self.size - pad_x) / inner_w
        right = ((centre_x + half_w) * self.size - pad_x) / inner_w
        top = ((centre_y - half_h) * self.size - pad_y) / inner_h
        bottom = ((centre_y + half_h) * self.size - pad_y) / inner_h
        boxes = np.clip(np.stack([left, top, right, bottom], -1), 0.0, 1.0)
        chosen: list[int] = []
        for index in np.argsort(-scores):
            if all(overlap(boxes[index], boxes[other]) < NMS_OVERLAP for other in chosen):
                chosen.append(int(index))
        return [
            Detection(self.kind, float(scores[i]), tuple(round(float(v), 4) for v in boxes[i]))
            for i in chosen
        ]


class PeopleDetector:
    """Counts people with the person and the face detector; unavailable (and says so once)
    when the model package or the interpreter is not installed."""

    def __init__(self) -> None:
        self._detectors: tuple[_SsdDetector, _SsdDetector] | None = None
        self._lock = threading.Lock()
        self._loaded = False

    @property
    def available(self) -> bool:
        return self._load() is not None

    def _load(self) -> tuple[_SsdDetector, _SsdDetector] | None:
        with self._lock:
            if not self._loaded:
                self._loaded = True
                if not people_detection_available():
                    log.warning(
                        "People detection is off: install ai-edge-litert and "
                        "'mediapipe==0.10.14 --no-deps' (make setup does) to have it."
                    )
                    return None
                folder = _model_folder()
                assert folder is not None
                self._detectors = (
                    _SsdDetector(
                        folder / PERSON_MODEL,
                        "person",
                        224,
                        [8, 16, 32],
                        [2, 2, 6],
                        PERSON_THRESHOLD,
                    ),
                    _SsdDetector(folder / FACE_MODEL, "face", 192, [4], [1], FACE_THRESHOLD),
                )
            return self._detectors

    def detect_faces(self, image: Image.Image) -> list[Detection]:
        """The face detector alone (what the faces stage needs)."""
        detectors = self._load()
        if detectors is None:
            return []
        with self._lock:
            return detectors[1](image)

    def detect(self, image: Image.Image) -> People:
        detectors = self._load()
        if detectors is None:
            return People()
        with self._lock:  # an interpreter is not thread-safe
            found = [d for detector in detectors for d in detector(image)]
        persons = sum(d.kind == "person" for d in found)
        faces = sum(d.kind == "face" for d in found)
        return People(count=max(persons, faces), detections=found)
