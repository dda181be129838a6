"""An in-memory server speaking Pinecone's data-plane REST protocol (the subset the official
client uses: upsert, query, fetch, list, delete, describe_index_stats), for tests on loopback.
It enforces the limits a real index would: dimension, 1000 vectors and 2 MB per upsert,
40 KB of metadata per vector, ASCII ids."""

from __future__ import annotations

import json
from collections import defaultdict
from urllib.parse import parse_qs, urlparse

import numpy as np

from dam_pipeline_tests.servers import ScriptedHTTPServer


def _matches(metadata: dict, filter_: dict | None) -> bool:
    if not filter_:
        return True
    for field, condition in filter_.items():
        if field == "$and":
            if not all(_matches(metadata, f) for f in condition):
                return False
            continue
        if field == "$or":  # Pinecone's filter language has both
            if not any(_matches(metadata, f) for f in condition):
                return False
            continue
        value = metadata.get(field)
        if not isinstance(condition, dict):
            condition = {"$eq": condition}
        for op, operand in condition.items():
            if not _compare(op, value, operand):
                return False
    return True


def _compare(op: str, value, operand) -> bool:
    if op in ("$gte", "$lte") and value is None:
        return False
    return {
        "$eq": lambda: value == operand,
        "$ne": lambda: value != operand,
        "$in": lambda: value in operand,
        "$nin": lambda: value not in operand,
        "$gte": lambda: value >= operand,
        "$lte": lambda: value <= operand,
    }[op]()


class PineconeIndexServer:
    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.namespaces: dict[str, dict[str, dict]] = defaultdict(dict)
        self.upsert_sizes: list[int] = []
        self.server = ScriptedHTTPServer(self.handle)

    def __enter__(self) -> PineconeIndexServer:
        self.server.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.server.__exit__(*exc)

    @property
    def url(self) -> str:
        return self.server.url

    def handle(self, method: str, path: str, body):
        parsed = urlparse(path)
        query = parse_qs(parsed.query)
        namespace = (
            (body or {}).get("namespace", "")
            if isinstance(body, dict)
            else query.get("namespace", [""])[0]
        )
        vectors = self.namespaces[namespace]
        if parsed.path == "/vectors/upsert":
            items = body["vectors"]
            size = len(json.dumps(body).encode())
            if len(items) > 1000 or size > 2 * 1024 * 1024:
                return (
                    400,
                    {
                        "code": 3,
                        "message": f"request too large: {len(items)} vectors, {size} bytes",
                    },
                    {},
                )
            for item in items:
                if len(item["values"]) != self.dimension:
                    return (
                        400,
                        {"code": 3, "message": "Vector dimension does not match the index"},
                        {},
                    )
                metadata_bytes = json.dumps(item.get("metadata", {}), ensure_ascii=False).encode()
                if len(metadata_bytes) > 40960:
                    return 400, {"code": 3, "message": "Metadata size exceeds the limit"}, {}
                if not item["id"].isascii():
                    return 400, {"code": 3, "message": "Vector ID must be ASCII"}, {}
                vectors[item["id"]] = item
            self.upsert_sizes.append(len(items))
            return 200, {"upsertedCount": len(items)}, {}
        if parsed.path == "/query":
            query_vector = np.asarray(body["vector"], dtype=np.float32)
            scored = []
            for item in vectors.values():
                if _matches(item.get("metadata", {}), body.get("filter")):
                    values = np.asarray(item["values"], dtype=np.float32)
                    denominator = (
                        float(np.linalg.norm(values) * np.linalg.norm(query_vector)) or 1.0
                    )
                    scored.append((float(values @ query_vector) / denominator, item))
            scored.sort(key=lambda pair: -pair[0])
            matches = [
                {
                    "id": item["id"],
                    "score": score,
                    "values": [],
                    **(
                        {"metadata": item.get("metadata", {})}
                        if body.get("includeMetadata")
                        else {}
                    ),
                }
                for score, item in scored[: body["topK"]]
            ]
            return 200, {"matches": matches, "namespace": namespace, "usage": {"readUnits": 1}}, {}
        if parsed.path == "/vectors/fetch":
            found = {i: vectors[i] for i in query.get("ids", []) if i in vectors}
            return 200, {"vectors": found, "namespace": namespace, "usage": {"readUnits": 1}}, {}
        if parsed.path == "/vectors/list":
            prefix = query.get("prefix", [""])[0]
            limit = int(query.get("limit", ["100"])[0])
            start = int(query.get("paginationToken", ["0"])[0])
            ids = sorted(i for i in vectors if i.startswith(prefix))
            page = ids[start : start + limit]
            payload = {
                "vectors": [{"id": i} for i in page],
                "namespace": namespace,
                "usage": {"readUnits": 1},
            }
            if start + limit < len(ids):
                payload["pagination"] = {"next": str(start + limit)}
            return 200, payload, {}
        if parsed.path == "/vectors/delete":
            if body.get("deleteAll"):
                vectors.clear()
            for vector_id in body.get("ids", []):
                vectors.pop(vector_id, None)
            return 200, {}, {}
        if parsed.path == "/describe_index_stats":
            counts = {ns: {"vectorCount": len(v)} for ns, v in self.namespaces.items() if v}
            total = sum(len(v) for v in self.namespaces.values())
            return (
                200,
                {
                    "namespaces": counts,
                    "dimension": self.dimension,
                    "indexFullness": 0.0,
                    "totalVectorCount": total,
                },
                {},
            )
        return 404, {"code": 5, "message": f"no route {method} {parsed.path}"}, {}
