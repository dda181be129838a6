import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from dam_pipeline.captioning import LocalCaptioner, build_captioner
from dam_pipeline.captioning.colours import dominant_colours
from dam_pipeline.captioning.efficientnet_lite import load_efficientnet_lite0
from dam_pipeline.captioning.labels import class_categories, class_names
from dam_pipeline.captioning.ocr import tesseract_available
from dam_pipeline_tests.conftest import photo


def test_packaged_weights_load_strictly_into_the_network() -> None:
    model = load_efficientnet_lite0()
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(4.65e6, rel=0.02)


def test_classifier_names_the_cat_a_cat() -> None:
    captioner = build_captioner("local")
    probabilities = captioner.class_probabilities([photo("chelsea")])[0]
    top5 = probabilities.argsort()[::-1][:5]
    assert class_categories()[top5[0]] == "cat"
    assert "cat" in class_names()[top5[0]] or class_names()[top5[0]] == "Egyptian Mau"


def test_captions_say_what_a_person_would_search_for() -> None:
    cat, coffee, rocket = build_captioner("local").caption_batch(
        [photo("chelsea"), photo("coffee"), photo("rocket")]
    )
    assert cat.text.startswith("A photo of a cat") and "cat" in cat.tags
    assert "espresso" in coffee.text
    assert "rocket" in rocket.tags
    for caption in (cat, coffee, rocket):
        assert caption.colours and caption.text.endswith(".")
        assert all(0 < score <= 1 for _, score in caption.labels)


def test_dominant_colours_of_plain_images() -> None:
    assert dominant_colours(Image.new("RGB", (64, 64), (200, 20, 30))) == ["red"]
    half = Image.new("RGB", (64, 64), (255, 255, 255))
    half.paste((10, 10, 10), (0, 0, 64, 32))
    assert set(dominant_colours(half)) == {"white", "black"}


def test_fact_sentence_and_tags() -> None:
    from dam_pipeline.captioning.facts import fact_sentence, fact_tags, orientation

    exif = {"camera": "Canon EOS 80D", "date_taken": "2023-07-14T10:00:00", "has_gps": True}
    sentence = fact_sentence(4000, 3000, exif)
    assert sentence == (
        "Landscape, high-resolution (12.0 MP) photo taken on 14 July 2023 with a Canon EOS 80D; "
        "it has a GPS location."
    )
    assert fact_tags(4000, 3000, exif) == [
        "landscape",
        "high-resolution",
        "canon eos 80d",
        "2023",
        "geotagged",
    ]
    assert [orientation(*size) for size in ((3000, 4000), (500, 500), (6000, 2000))] == [
        "portrait",
        "square",
        "panorama",
    ]


def test_scene_words_come_from_the_subject() -> None:
    (motorcycle,) = build_captioner("local").caption_batch([photo("motorcycle_left")])
    assert "motorcycle" in motorcycle.tags and "on a street" in motorcycle.text


@pytest.mark.skipif(not tesseract_available(), reason="tesseract-ocr is not installed")
def test_ocr_reads_text_in_the_image() -> None:
    sign = Image.new("RGB", (900, 300), "white")
    draw = ImageDraw.Draw(sign)
    draw.text((40, 90), "OPEN 24 HOURS", fill="black", font=ImageFont.load_default(size=90))
    (caption,) = LocalCaptioner(ocr="auto").caption_batch([sign])
    assert "OPEN" in caption.ocr_text and "HOURS" in caption.ocr_text
    assert '"OPEN 24 HOURS"' in caption.text
    (no_ocr,) = LocalCaptioner(ocr="off").caption_batch([sign])
    assert no_ocr.ocr_text == ""


def test_the_optimized_network_computes_the_same_function() -> None:
    import torch

    from dam_pipeline.captioning.efficientnet_lite import optimized_for_inference
    from dam_pipeline.captioning.local import views

    batch = torch.from_numpy(np.stack(views(photo("chelsea"))))
    eager = load_efficientnet_lite0()
    fast = optimized_for_inference(load_efficientnet_lite0())
    with torch.inference_mode():
        expected_features = eager.features(batch)
        expected = eager._fc(expected_features)
        features, actual = fast(batch.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(expected, actual, atol=1e-3)
    assert torch.allclose(expected_features, features, atol=1e-3)
    assert expected.argmax(dim=1).tolist() == actual.argmax(dim=1).tolist()


def _side_by_side(*images: Image.Image) -> Image.Image:
    side = 512
    row = Image.new("RGB", (side * len(images), side))
    for position, image in enumerate(images):
        row.paste(image.resize((side, side)), (side * position, 0))
    return row


def test_people_are_in_the_caption_and_tags_with_their_boxes() -> None:
    astronaut = photo("astronaut")
    group = _side_by_side(astronaut, photo("camera"), astronaut.transpose(Image.FLIP_LEFT_RIGHT))
    portrait = astronaut.crop((150, 20, 330, 220))
    one, several, close = build_captioner("local").caption_batch([astronaut, group, portrait])
    assert one.text.startswith("A photo of a person and ") and one.tags[0] == "person"
    assert one.people["count"] == 1
    for detection in one.people["detections"]:
        assert detection["kind"] in ("person", "face") and 0.5 < detection["score"] <= 1
        left, top, right, bottom = detection["box"]
        # the astronaut's head and shoulders are in the upper left half of the photo
        assert 0.2 < left < right < 0.65 and 0.05 < top < bottom < 0.6
    assert several.people["count"] >= 2 and "people" in several.tags
    assert "two people" in several.text or "a group of people" in several.text
    assert "a close-up of a person's face" in close.text and "face" in close.tags


def test_no_people_in_landscapes_animals_or_things() -> None:
    photos = [photo(name) for name in ("chelsea", "horse", "rocket", "coffee", "motorcycle_left")]
    for caption in build_captioner("local").caption_batch(photos):
        assert caption.people == {}
        assert not {"person", "people", "face"} & set(caption.tags)
        assert "person" not in caption.text and "people" not in caption.text


def test_people_detection_can_be_switched_off_and_recaptions() -> None:
    on = build_captioner("local")
    off = build_captioner("local", people=False)
    assert on.fingerprint != off.fingerprint  # cached captions are made again
    (caption,) = off.caption_batch([photo("astronaut")])
    assert caption.people == {} and "person" not in caption.tags
