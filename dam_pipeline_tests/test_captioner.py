import pytest
from PIL import Image

from dam_pipeline.captioning import build_captioner
from dam_pipeline.captioning.colours import dominant_colours
from dam_pipeline.captioning.efficientnet_lite import load_efficientnet_lite0
from dam_pipeline.captioning.labels import class_categories, class_names
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
