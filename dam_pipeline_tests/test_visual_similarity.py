""" "More like this" by looks: the visual vectors, their index, and similar-by-image.

Photos from scikit-image (``photo``); edited copies made here (cropped, mirrored, darker).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import ImageEnhance, ImageOps

from dam_pipeline import components
from dam_pipeline.cache import SqliteContentCache
from dam_pipeline.captioning import ImageInput
from dam_pipeline.captioning.local import LocalCaptioner
from dam_pipeline.embedding.visual import VISUAL_FINGERPRINT, ClassifierFeatures
from dam_pipeline.library import Library
from dam_pipeline.stages import embed_partition
from dam_pipeline.stages.embeddings import visual_hash
from dam_pipeline_tests.conftest import ingest, jpeg_bytes, photo, write_library


def edited(name: str) -> bytes:
    """A copy someone made: the left three quarters, mirrored, a little darker."""
    image = photo(name)
    crop = image.crop((0, 0, image.width * 3 // 4, image.height))
    darker = ImageEnhance.Brightness(ImageOps.mirror(crop)).enhance(0.8)
    return jpeg_bytes(darker, subsampling=2)


LIBRARY = {
    "walks/astronaut.jpg": "astronaut",
    "walks/rocket.jpg": "rocket",
    "walks/coffee.jpg": "coffee",
    "walks/chelsea.jpg": "chelsea",
    "walks/coins.jpg": "coins",
    "copies/astronaut edited.jpg": edited("astronaut"),
    "copies/coffee edited.jpg": edited("coffee"),
}


def test_the_captioner_and_the_visual_embedder_make_the_same_vector() -> None:
    """The captioner's by-product and the embedder for images it did not caption must be
    one vector space (one cache fingerprint)."""
    data = [jpeg_bytes(photo("astronaut")), edited("chelsea")]
    captions = LocalCaptioner(ocr="off", people=False).caption_batch(
        [ImageInput(data=d) for d in data]
    )
    from_captioner = np.stack([c.visual for c in captions])
    from_embedder = ClassifierFeatures().embed_images(data)
    assert from_embedder.shape == (2, ClassifierFeatures.dimension)
    assert np.allclose(np.linalg.norm(from_embedder, axis=1), 1.0, atol=1e-5)
    assert np.allclose(from_captioner, from_embedder, atol=1e-4)
    assert float(from_embedder[0] @ from_embedder[1]) < 0.9  # different photos differ


def test_more_like_this_finds_the_edited_copy_by_looks(settings, instance) -> None:
    write_library(settings.layout.library, LIBRARY)
    results = ingest(settings, instance)
    visual = components.open_visual_index(settings)
    assert visual is not None
    main = components.open_vector_store(settings)
    assert visual.count() == main.count() == len(LIBRARY)
    for partition in ("walks", "copies"):
        assert visual.list_partition(partition) == main.list_partition(partition)
        assert results[partition]["embeddings"]["visual_computed"] == 0  # the captioner's
        assert results[partition]["vector_index"]["visual_upserted"] > 0

    library = Library(settings)
    for original in ("astronaut", "coffee"):
        copy = f"copies/{original} edited.jpg"
        assert library.similar(key=copy, top_k=3)[0].key == f"walks/{original}.jpg"
        assert library.similar(key=f"walks/{original}.jpg", top_k=3)[0].key == copy
    upload = photo("rocket").crop((40, 0, 400, 400)).rotate(4)
    out = io.BytesIO()
    upload.save(out, format="PNG")
    assert library.similar(image=out.getvalue(), top_k=3)[0].key == "walks/rocket.jpg"

    # near duplicates: pixels miss a mirrored crop, looks join it; different photos stay apart
    groups = library.duplicates()
    assert [g.keys for g in groups] == [
        ["copies/astronaut edited.jpg", "walks/astronaut.jpg"],
        ["copies/coffee edited.jpg", "walks/coffee.jpg"],
    ]
    assert [g.joined_by for g in groups] == ["looks", "looks"]
    assert all(0.86 <= g.similarity <= 1.0 for g in groups)
    assert library.duplicates(prefixes=["walks"]) == []

    # a deleted photo leaves the visual index with the rest
    (settings.layout.library / "walks" / "coins.jpg").unlink()
    ingest(settings, instance)
    assert visual.count() == main.count() == len(LIBRARY) - 1
    assert "walks/coins.jpg" not in {m["key"] for m in visual.list_partition("walks").values()}


def test_images_captioned_elsewhere_get_their_visual_vector_in_the_embeddings_stage(
    settings, instance, tmp_path
) -> None:
    """A vision-LLM captioner (or an index older than the visual vectors) leaves no visual
    vector in the cache: the embeddings stage makes it from the normalized image."""
    write_library(settings.layout.library, {"walks/astronaut.jpg": "astronaut"})
    write_library(settings.layout.library, {"walks/coffee.jpg": "coffee"})
    ingest(settings, instance)
    state = components.open_state(settings)
    captions = state.manifests.read("captions", "walks")
    assert captions is not None and len(captions.ok()) == 2
    made_by_captioner = state.cache.get_vectors(
        VISUAL_FINGERPRINT, [visual_hash(r) for r in captions.ok()]
    )
    empty_cache = SqliteContentCache(tmp_path / "fresh.sqlite")
    manifest = embed_partition(
        captions,
        components.build_embedder(settings),
        empty_cache,
        state.objects,
        visual=ClassifierFeatures(),
    )
    assert manifest.summary["visual_computed"] == 2
    assert all(r.visual == VISUAL_FINGERPRINT for r in manifest.ok())
    made_here = empty_cache.get_vectors(VISUAL_FINGERPRINT, made_by_captioner)
    for digest, vector in made_by_captioner.items():
        assert np.allclose(vector, made_here[digest], atol=1e-4)


def test_without_the_visual_index_more_like_this_uses_the_captions(settings, instance) -> None:
    settings = settings.replace(visual_index=False)
    write_library(settings.layout.library, {k: v for k, v in LIBRARY.items() if "walks" in k})
    ingest(settings, instance)
    assert components.open_visual_index(settings) is None
    library = Library(settings)
    assert library.visual_index is None
    hits = library.similar(key="walks/astronaut.jpg", top_k=2)
    assert len(hits) == 2 and "walks/astronaut.jpg" not in [h.key for h in hits]
    assert library.duplicates() == []  # pixels alone: none of these photos is another's copy
    embeddings = components.open_state(settings).manifests.read("embeddings", "walks")
    assert embeddings is not None and all(r.visual == "" for r in embeddings.ok())
    assert not any("_visual" in name for name in _collections(settings))


def _collections(settings) -> list[str]:
    store = components.open_vector_store(settings)
    return store.client.list_collections()
