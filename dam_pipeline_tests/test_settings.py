"""Settings: one typed source of configuration, read when asked, refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from dam_pipeline.settings import Settings, SettingsError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.variables():
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DAM_CAPTIONER", "bogus", "DAM_CAPTIONER='bogus' is not valid: expected 'local', 'groq'"),
        ("DAM_VECTOR_STORE", "faiss", "expected 'chroma', 'pinecone' or 'pgvector'"),
        ("DAM_SEARCH_MODE", "fuzzy", "expected 'dense', 'hybrid' or 'keyword'"),
        ("DAM_KEYWORD_WEIGHT", "heavy", "DAM_KEYWORD_WEIGHT='heavy' is not valid"),
        ("DAM_PARTITION_DEPTH", "0", "greater than or equal to 1"),
        ("DAM_MAX_DELETE_SHARE", "2", "less than or equal to 1"),
        ("DAM_EMBEDDING_DIMENSION", "512", "expected 256, 384 or 1024"),
        ("DAM_REASONER_VISION", "maybe", "DAM_REASONER_VISION='maybe'"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=message) as refused:
        Settings.from_env()
    assert "\n" not in str(refused.value)


def test_an_empty_value_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAM_KEYWORD_WEIGHT", "")
    monkeypatch.setenv("DAM_CAPTIONER", "")
    settings = Settings.from_env()
    assert settings.keyword_weight == 0.25 and settings.captioner == "local"


def test_environment_is_read_when_asked_not_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAM_SEARCH_MODE", "hybrid")
    monkeypatch.setenv("DAM_EMBEDDING_DIMENSION", "256")
    settings = Settings.from_env()
    assert settings.search_mode == "hybrid" and settings.embedding_dimension == 256


def test_paths_follow_the_data_directory(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "a")
    assert settings.source == str(tmp_path / "a" / "library")
    assert settings.chroma_path == tmp_path / "a" / "chroma"
    assert settings.dagster_home == tmp_path / "a" / "dagster_home"
    moved = settings.replace(data_dir=tmp_path / "b")
    assert moved.chroma_path == tmp_path / "b" / "chroma"
    assert moved.source == str(tmp_path / "b" / "library")
    kept = Settings(data_dir=tmp_path / "a", source="s3://bucket").replace(data_dir=tmp_path / "b")
    assert kept.source == "s3://bucket"


def test_aws_and_provider_variables_keep_their_own_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("GROQ_API_KEY", "gsk_secret")
    settings = Settings.from_env()
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.aws_region == "eu-west-1"
    assert settings.api_key("groq") == "gsk_secret" and settings.api_key("local") == ""
    assert "gsk_secret" not in repr(settings)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://s3-only:9000")
    assert Settings.from_env().s3_endpoint_url == "http://s3-only:9000"
