"""An S3-compatible bucket (AWS S3, MinIO, Supabase Storage, Cloudflare R2) as a Source.

Takes a ready boto3 S3 client, so the same code serves every provider: only the endpoint
URL, region and credentials differ. Listing always pages through ``list_objects_v2``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from dam_pipeline.sources.base import (
    ObjectGoneError,
    ObjectUnreadableError,
    SourceObject,
    SourceUnavailableError,
    partition_level,
)

PAGE_SIZE = 1000


class S3Source:
    def __init__(
        self,
        client: Any,
        bucket: str,
        root: str = "",
        depth: int = 1,
        url_expiry_seconds: int = 3600,
        public_url_template: str = "",
    ) -> None:
        if depth < 1:
            raise ValueError(f"The partition depth must be 1 or more, not {depth}")
        self.client = client
        self.bucket = bucket
        self.root = root.strip("/")
        self.depth = depth
        self.url_expiry_seconds = url_expiry_seconds
        self.public_url_template = public_url_template
        self.source_id = f"s3://{bucket}/{self.root}".rstrip("/")
        self.hashes_while_listing = False  # reading = downloading: hash while normalizing

    def _prefix_of(self, folder: str) -> str:
        """The full S3 prefix of a folder relative to the root (``""``: the root)."""
        parts = [part for part in (self.root, folder) if part]
        return "/".join(parts) + "/" if parts else ""

    def _relative(self, key: str) -> str:
        return key[len(self.root) + 1 :] if self.root else key

    def _pages(
        self, prefix: str, delimiter: str | None = None, start_after: str | None = None
    ) -> Iterator[dict]:
        paginator = self.client.get_paginator("list_objects_v2")
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": prefix,
            "PaginationConfig": {"PageSize": PAGE_SIZE},
        }
        if delimiter:
            args["Delimiter"] = delimiter
        if start_after:
            args["StartAfter"] = self._full_key(start_after)
        try:
            yield from paginator.paginate(**args)
        except (ClientError, BotoCoreError) as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: Exception) -> SourceUnavailableError:
        """One line a person can act on, instead of botocore's traceback."""
        where = self.client.meta.endpoint_url
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
        if code == "NoSuchBucket":
            hint = f"the bucket {self.bucket!r} does not exist at {where}: check DAM_SOURCE"
        elif code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            hint = (
                f"{where} refused access to {self.bucket!r} ({code}): check AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY and the bucket policy"
            )
        elif code:
            hint = f"{where} answered {code} for {self.bucket!r}: {exc}"
        else:
            hint = (
                f"cannot reach {where} ({type(exc).__name__}): check AWS_ENDPOINT_URL and "
                "that the server is running"
            )
        return SourceUnavailableError(f"Cannot list {self.source_id}: {hint}.")

    def _objects(
        self, folder: str, recursive: bool, start_after: str | None = None
    ) -> Iterator[SourceObject]:
        prefix = self._prefix_of(folder)
        empty_named: list[str] = []
        for page in self._pages(prefix, None if recursive else "/", start_after):
            yield from self._page_objects(page)
            if not recursive:
                empty_named += [
                    p["Prefix"]
                    for p in page.get("CommonPrefixes", [])
                    if _is_empty_named(p["Prefix"], prefix)
                ]
        # ``a//b.jpg`` or ``/abs/x.jpg``: a folder with no name is no partition of its own,
        # so its objects belong here (see partition_of).
        for sub in empty_named:
            for page in self._pages(sub):
                yield from self._page_objects(page)

    def _page_objects(self, page: dict) -> Iterator[SourceObject]:
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/"):
                if int(obj["Size"]) == 0:
                    continue  # an empty "folder" placeholder: structure, not content
                yield SourceObject(  # a placeholder that holds bytes: accounted for, unread
                    key=self._relative(obj["Key"]),
                    size=int(obj["Size"]),
                    last_modified=obj["LastModified"].isoformat(),
                    version=obj.get("ETag", "").strip('"'),
                    problem=(
                        f"the key ends in '/' (a folder placeholder) but holds {obj['Size']} "
                        "bytes: copy it to a key without the trailing '/' to index it"
                    ),
                )
                continue
            yield SourceObject(
                key=self._relative(obj["Key"]),
                size=int(obj["Size"]),
                last_modified=obj["LastModified"].isoformat(),
                version=obj.get("ETag", "").strip('"') or obj["LastModified"].isoformat(),
            )

    def list_prefixes(self) -> list[str]:
        """Folders ``depth`` levels below the root (delimiter listings, level by level), plus
        any shallower folder that holds files itself (``""`` for the root)."""
        found: set[str] = set()
        frontier = [""]
        for level in range(self.depth + 1):
            deeper: list[str] = []
            for folder in frontier:
                if level == self.depth:
                    found.add(folder)
                    continue
                listing = self._prefix_of(folder)
                for page in self._pages(listing, delimiter="/"):
                    if any(not o["Key"].endswith("/") for o in page.get("Contents", [])):
                        found.add(folder)
                    for common in page.get("CommonPrefixes", []):
                        if _is_empty_named(common["Prefix"], listing):
                            found.add(folder)  # its objects belong to this folder
                        else:
                            deeper.append(self._relative(common["Prefix"]).rstrip("/"))
            frontier = deeper
        return sorted(found)

    def iter_objects(self, prefix: str) -> Iterator[SourceObject]:
        yield from self._objects(prefix, recursive=partition_level(prefix) >= self.depth)

    def iter_all_objects(self, start_after: str | None = None) -> Iterator[SourceObject]:
        yield from self._objects("", recursive=True, start_after=start_after)

    def read_bytes(self, key: str, limit: int | None = None) -> bytes:
        extra = {"Range": f"bytes=0-{limit - 1}"} if limit else {}
        return self._get(key, **extra)["Body"].read()

    def open_object(self, key: str) -> BinaryIO:
        """The object's body as a stream (one GET, read as it arrives)."""
        return self._get(key)["Body"]

    def _get(self, key: str, **extra: Any) -> dict:
        """GET the object; what the bucket refuses becomes one line (no traceback): gone,
        archived, or refused, each an ``OSError`` the stage records (and tries again)."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._full_key(key), **extra)
        except self.client.exceptions.NoSuchKey as exc:
            raise ObjectGoneError(f"{key} is no longer in {self.source_id}") from exc
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "InvalidObjectState":
                reason = (
                    "the object is archived (GLACIER or DEEP_ARCHIVE storage class): restore "
                    "it to index it; it is tried again on every run"
                )
            elif code in ("AccessDenied", "403"):
                reason = "access denied by the bucket: check the bucket policy"
            else:
                reason = f"the bucket answered {code or 'an error'}"
            raise ObjectUnreadableError(reason) from None
        except BotoCoreError as exc:
            raise ObjectUnreadableError(f"the bucket could not be reached ({exc})") from None

    def _full_key(self, key: str) -> str:
        return f"{self.root}/{key}" if self.root else key

    def url_for(self, key: str, media_type: str = "") -> str:
        """A presigned GET; with ``media_type``, the response is typed and shown inline as
        that (an object stored as ``text/html`` is never served as a page)."""
        full = self._full_key(key)
        if self.public_url_template:
            return self.public_url_template.format(bucket=self.bucket, key=quote(full))
        params = {"Bucket": self.bucket, "Key": full}
        if media_type:
            shown = "attachment" if media_type == "application/octet-stream" else "inline"
            name = quote(full.rsplit("/", 1)[-1])
            params["ResponseContentType"] = media_type
            params["ResponseContentDisposition"] = f"{shown}; filename*=UTF-8''{name}"
        return self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=self.url_expiry_seconds
        )


def _is_empty_named(common_prefix: str, listed: str) -> bool:
    """Whether a delimiter listing's common prefix is a folder with an empty name."""
    return common_prefix[len(listed) :] == "/"
