"""A small client of the Chroma server's HTTP API (v2), for the calls the store makes.

The ``chromadb`` package's own client takes about a second to import (it brings the whole
embedded database with it), which every Dagster run, `dam` command and page start paid
before its first query; this one takes httpx only. It speaks the same JSON as
``chromadb.HttpClient`` (``chromadb/api/fastapi.py``) and returns the same shapes (dicts of
``ids``, ``metadatas``, ``documents``, ``embeddings``, ``distances``), so the store reads
as it did. The server itself is Chroma's (``chroma run``), tested as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

TENANT, DATABASE = "default_tenant", "default_database"
TIMEOUT = httpx.Timeout(120.0, connect=10.0)


class ChromaServerError(RuntimeError):
    """The Chroma server refused a request; the message is the server's."""


class ChromaHttpClient:
    """One server (``url``: ``http://host:port``); a keep-alive connection per client."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=f"{self.url}/api/v2", timeout=TIMEOUT)
        self._max_batch: int | None = None

    def request(self, method: str, path: str, body: Any = None) -> Any:
        response = self._http.request(method, quote(path, safe="/"), json=body)
        if response.status_code >= 400:
            try:
                detail = response.json()
                message = detail.get("message") or detail.get("error") or response.text
            except ValueError:
                message = response.text
            raise ChromaServerError(f"Chroma {method} {path}: {response.status_code} {message}")
        return response.json() if response.content else None

    def heartbeat(self) -> int:
        return int(self.request("GET", "/heartbeat")["nanosecond heartbeat"])

    def get_max_batch_size(self) -> int:
        if self._max_batch is None:
            self._max_batch = int(self.request("GET", "/pre-flight-checks")["max_batch_size"])
        return self._max_batch

    def _collections(self) -> str:
        return f"/tenants/{TENANT}/databases/{DATABASE}/collections"

    def get_or_create_collection(self, name: str, metadata: dict[str, Any]) -> Collection:
        model = self.request(
            "POST",
            self._collections(),
            {"name": name, "metadata": metadata, "configuration": None, "get_or_create": True},
        )
        return Collection(self, model)

    def list_collections(self) -> list[str]:
        """The names of the database's collections."""
        return [c["name"] for c in self.request("GET", self._collections())]

    def delete_collection(self, name: str) -> None:
        self.request("DELETE", f"{self._collections()}/{name}")


def _vectors(embeddings: Any) -> list[list[float]]:
    return np.asarray(embeddings, dtype=np.float32).tolist()


class Collection:
    """The calls of ``chromadb.Collection`` the store uses, with the same results."""

    def __init__(self, client: ChromaHttpClient, model: dict[str, Any]) -> None:
        self._client = client
        self.id = model["id"]
        self.name = model["name"]
        self.metadata: dict[str, Any] = model.get("metadata") or {}
        self.configuration: dict[str, Any] = model.get("configuration_json") or {}

    def _path(self, action: str = "") -> str:
        return f"{self._client._collections()}/{self.id}{action}"

    def count(self) -> int:
        return int(self._client.request("GET", self._path("/count")))

    def modify(self, metadata: dict[str, Any]) -> None:
        self._client.request("PUT", self._path(), {"new_metadata": metadata, "new_name": None})
        self.metadata = dict(metadata)

    def search_ef(self) -> int | None:
        """The HNSW graph's ``ef_search`` (Chroma's default: 100)."""
        return ((self.configuration or {}).get("hnsw") or {}).get("ef_search")

    def set_search_ef(self, ef: int) -> None:
        """Change ``ef_search`` (one of the settings Chroma lets a collection change)."""
        self._client.request(
            "PUT",
            self._path(),
            {
                "new_name": None,
                "new_metadata": None,
                "new_configuration": {"hnsw": {"ef_search": ef}},
            },
        )
        hnsw = {**((self.configuration or {}).get("hnsw") or {}), "ef_search": ef}
        self.configuration = {**(self.configuration or {}), "hnsw": hnsw}

    def get(
        self,
        ids: Sequence[str] | None = None,
        where: dict[str, Any] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        include: Sequence[str] = ("metadatas", "documents"),
    ) -> dict[str, Any]:
        body = {
            "ids": list(ids) if ids is not None else None,
            "where": where,
            "limit": limit,
            "offset": offset,
            "where_document": None,
            "include": list(include),
        }
        return self._client.request("POST", self._path("/get"), body)

    def query(
        self,
        query_embeddings: Any,
        n_results: int,
        where: dict[str, Any] | None = None,
        include: Sequence[str] = ("metadatas", "documents", "distances"),
    ) -> dict[str, Any]:
        body = {
            "ids": None,
            "query_embeddings": _vectors(query_embeddings),
            "n_results": n_results,
            "where": where,
            "where_document": None,
            "include": list(include),
        }
        return self._client.request("POST", self._path("/query"), body)

    def upsert(
        self,
        ids: Sequence[str],
        embeddings: Any,
        documents: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        body = {
            "ids": list(ids),
            "embeddings": _vectors(embeddings),
            "metadatas": list(metadatas),
            "documents": list(documents),
            "uris": None,
        }
        self._client.request("POST", self._path("/upsert"), body)

    def delete(self, ids: Sequence[str]) -> None:
        body = {"ids": list(ids), "where": None, "where_document": None}
        self._client.request("POST", self._path("/delete"), body)
