"""Amazon Titan Multimodal Embeddings (``amazon.titan-embed-image-v1``) on Bedrock.

It embeds the normalized image itself, and the query text, into one shared space: search
then compares words with pixels, not with a caption. Called through boto3's
``bedrock-runtime`` ``InvokeModel``; region, credentials and endpoint come from the
environment. One image per request (the API has no batch call), several in flight, under
the call policy of ``dam_pipeline.retry``: each request has ``timeout`` as its deadline and
an item 3x it across its attempts; a timed-out request is recorded as a call of unknown
cost (Bedrock may have billed it).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from dam_pipeline.costs import UNREPORTED, Usage, UsageMeter
from dam_pipeline.retry import call_with_retries, is_timeout

TITAN_MULTIMODAL = "amazon.titan-embed-image-v1"
OUTPUT_LENGTHS = (256, 384, 1024)


def _normalized(vector: Sequence[float]) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    return array / norm if norm else array


class TitanMultimodalEmbedder:
    modality = "image"

    def __init__(
        self,
        model: str = TITAN_MULTIMODAL,
        dimension: int = 1024,
        region: str = "",
        endpoint_url: str = "",
        client: Any = None,
        concurrency: int = 4,
        attempts: int = 6,
        base_delay: float = 1.0,
        timeout: float = 30.0,
    ) -> None:
        if dimension not in OUTPUT_LENGTHS:
            raise ValueError(
                f"Titan output length must be one of {OUTPUT_LENGTHS}, not {dimension}"
            )
        self.model = model
        self.dimension = dimension
        self.batch_size = concurrency * 4
        self.attempts = attempts
        self.base_delay = base_delay
        self.fingerprint = f"bedrock/{model}/{dimension}"
        self.model_id = f"bedrock/{model}"
        self.meter = UsageMeter()
        """Requests, text tokens (``inputTextTokenCount``) and images, as Bedrock reports."""
        self.deadline = 3 * timeout
        """One item's total time across its attempts (DAM_LLM_TIMEOUT x 3)."""
        self.client = client or _bedrock_client(region, endpoint_url, timeout)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="titan")

    def _invoke(self, payload: dict) -> np.ndarray:
        body = json.dumps({**payload, "embeddingConfig": {"outputEmbeddingLength": self.dimension}})

        images = 1 if "inputImage" in payload else 0

        def call() -> np.ndarray:
            try:
                response = self.client.invoke_model(
                    modelId=self.model,
                    body=body,
                    contentType="application/json",
                    accept="application/json",
                )
            except Exception as exc:
                if is_timeout(exc):
                    self.meter.record(self.model_id, UNREPORTED + Usage(images=images))
                raise
            result = json.loads(response["body"].read())
            self.meter.record(
                self.model_id,
                Usage(
                    requests=1,
                    input_tokens=int(result.get("inputTextTokenCount") or 0),
                    images=images,
                ),
            )
            if "embedding" not in result:
                raise RuntimeError(
                    f"Bedrock returned no embedding: {result.get('message', result)}"
                )
            return _normalized(result["embedding"])

        return call_with_retries(
            call,
            "bedrock embedding",
            attempts=self.attempts,
            base_delay=self.base_delay,
            deadline=self.deadline,
        )

    def embed_images(self, images: Sequence[bytes]) -> np.ndarray:
        def one(jpeg: bytes) -> np.ndarray:
            return self._invoke({"inputImage": base64.b64encode(jpeg).decode("ascii")})

        vectors = list(self._pool.map(one, images))
        return np.stack(vectors) if vectors else np.zeros((0, self.dimension), dtype=np.float32)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        vectors = list(self._pool.map(lambda text: self._invoke({"inputText": text}), texts))
        return np.stack(vectors) if vectors else np.zeros((0, self.dimension), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self._invoke({"inputText": text})


def _bedrock_client(region: str, endpoint_url: str, timeout: float) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "bedrock-runtime",
        region_name=region or None,
        endpoint_url=endpoint_url or None,
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=min(10.0, timeout),
            read_timeout=timeout,
        ),
    )
