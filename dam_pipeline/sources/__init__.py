"""Where images come from: a local folder (default) or an S3-compatible bucket."""

from __future__ import annotations

from typing import Any

from dam_pipeline.sources.base import (
    IMAGE_EXTENSIONS,
    ObjectGoneError,
    Source,
    SourceObject,
    SourceUnavailableError,
    is_image_key,
    is_media_key,
    is_video_key,
)
from dam_pipeline.sources.local import LocalFolderSource
from dam_pipeline.sources.s3 import S3Source

__all__ = [
    "IMAGE_EXTENSIONS",
    "LocalFolderSource",
    "ObjectGoneError",
    "S3Source",
    "Source",
    "SourceObject",
    "SourceUnavailableError",
    "is_image_key",
    "is_media_key",
    "is_video_key",
    "open_source",
    "parse_s3_uri",
    "s3_client_from_env",
]


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/root/prefix`` -> (bucket, root prefix)."""
    rest = uri.removeprefix("s3://")
    bucket, _, root = rest.partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket: write it as s3://bucket or s3://bucket/prefix")
    return bucket, root.strip("/")


def s3_client_from_env(
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
) -> Any:
    """A boto3 S3 client: the credentials given, else the standard chain (AWS_* variables,
    profiles, roles)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region or None,
        aws_access_key_id=access_key_id or None,
        aws_secret_access_key=secret_access_key or None,
        aws_session_token=session_token or None,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10),
    )


def open_source(
    uri: str,
    depth: int = 1,
    s3_client: Any = None,
    url_expiry_seconds: int = 3600,
    public_url_template: str = "",
    library_id: str = "library",
) -> Source:
    """The source named by ``uri`` (``DAM_SOURCE``): ``s3://bucket[/root]`` or a folder
    (``library_id`` names it in vector ids, so the folder may move)."""
    if uri.startswith("s3://"):
        bucket, root = parse_s3_uri(uri)
        return S3Source(
            s3_client or s3_client_from_env(),
            bucket,
            root,
            depth=depth,
            url_expiry_seconds=url_expiry_seconds,
            public_url_template=public_url_template,
        )
    return LocalFolderSource(uri.removeprefix("file://"), depth=depth, library_id=library_id)
