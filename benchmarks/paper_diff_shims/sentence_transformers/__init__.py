"""SentenceTransformer(any name) -> gpo-ray's MiniLM embedder, so relevance retrieval is comparable."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np


@lru_cache(maxsize=1)
def _embedder() -> Any:
    from gpo_ray.llm.embedding import default_embedder

    return default_embedder()


class SentenceTransformer:
    def __init__(self, name: str = "", **_: Any) -> None:
        self.name = name

    def to(self, device: Any) -> SentenceTransformer:
        return self

    def encode(self, texts: Any, normalize_embeddings: bool = False, **_: Any) -> np.ndarray:
        vectors = np.asarray(_embedder().embed(list(texts)), dtype=np.float32)
        if normalize_embeddings:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.where(norms == 0, 1, norms)
        return vectors
