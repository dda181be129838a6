"""A sentence-transformers BERT model (transformer, mean pooling, normalization) run on
plain torch and the ``tokenizers`` library.

Why: ``import sentence_transformers`` pulls in transformers, scikit-learn and scipy and
costs about 8 s on this machine, paid by every run process and every CLI search before the
first vector; this encoder is ready in about 0.3 s once torch is imported and gives the same
vectors (tested against sentence-transformers to 1e-5). Models of other shapes (MPNet,
other poolings) still load through sentence-transformers (``supports``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PIPELINE = [
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
]
BATCH_TOKENS = 8192
"""Sentences are encoded in length-sorted batches of about this many tokens."""


def supports(folder: Path) -> bool:
    """True for a sentence-transformers folder holding a BERT with mean pooling and
    normalization, in safetensors, with a fast tokenizer: what this encoder runs exactly."""
    try:
        modules = json.loads((folder / "modules.json").read_text())
        config = json.loads((folder / "config.json").read_text())
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    except (OSError, ValueError):
        return False
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    return (
        [m.get("type") for m in modules] == PIPELINE
        and config.get("model_type") == "bert"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and config.get("hidden_act") == "gelu"
        and modes == {"pooling_mode_mean_tokens"}
        and (folder / "model.safetensors").exists()
        and (folder / "tokenizer.json").exists()
    )


class BertSentenceEncoder:
    """Encodes sentences as sentence-transformers would with the same folder."""

    def __init__(self, folder: Path) -> None:
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        config = json.loads((folder / "config.json").read_text())
        settings = json.loads((folder / "sentence_bert_config.json").read_text())
        self.dimension = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        max_length = min(int(settings["max_seq_length"]), int(config["max_position_embeddings"]))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.no_padding()
        weights = load_file(str(folder / "model.safetensors"))
        self.w = {k.removeprefix("bert."): v.float() for k, v in weights.items()}
        self._torch = torch

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, one row per text, in the order given."""
        encodings = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        start = 0
        while start < len(order):
            longest = len(encodings[order[start]].ids)  # longest first: a chunk pads to it
            chunk = order[start : start + max(1, BATCH_TOKENS // longest)]
            out[chunk] = self._encode_chunk([encodings[i] for i in chunk])
            start += len(chunk)
        return out

    def _encode_chunk(self, encodings: list) -> np.ndarray:
        torch = self._torch
        length = max(len(e.ids) for e in encodings)
        ids = torch.zeros((len(encodings), length), dtype=torch.long)
        types = torch.zeros_like(ids)
        mask = torch.zeros((len(encodings), length), dtype=torch.bool)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = torch.tensor(e.ids)
            types[row, : len(e.ids)] = torch.tensor(e.type_ids)
            mask[row, : len(e.ids)] = True
        with torch.inference_mode():
            hidden = self._forward(ids, types, mask)
            weights = mask.unsqueeze(-1).float()
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.numpy()

    def _forward(self, ids, types, mask):
        torch, w, F = self._torch, self.w, self._torch.nn.functional
        positions = torch.arange(ids.shape[1])
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][positions]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        batch, length, width = x.shape
        head = width // self.heads
        attend = mask[:, None, None, :]  # every query may attend to the real tokens

        def split(t):
            return t.view(batch, length, self.heads, head).transpose(1, 2)

        for n in range(self.layers):
            p = f"encoder.layer.{n}."
            q = split(self._linear(x, p + "attention.self.query"))
            k = split(self._linear(x, p + "attention.self.key"))
            v = split(self._linear(x, p + "attention.self.value"))
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
            context = context.transpose(1, 2).reshape(batch, length, width)
            x = self._norm(x + self._linear(context, p + "attention.output.dense"),
                           p + "attention.output.LayerNorm")  # fmt: skip
            inner = F.gelu(self._linear(x, p + "intermediate.dense"))
            x = self._norm(x + self._linear(inner, p + "output.dense"), p + "output.LayerNorm")
        return x

    def _linear(self, x, name: str):
        return self._torch.nn.functional.linear(x, self.w[name + ".weight"], self.w[name + ".bias"])

    def _norm(self, x, name: str):
        return self._torch.nn.functional.layer_norm(
            x, (x.shape[-1],), self.w[name + ".weight"], self.w[name + ".bias"], self.eps
        )
