"""The local MiniLM embedder and its chromadb adapter, fully offline."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")

from gpo_ray.llm import embedding as emb  # noqa: E402

try:
    emb.find_minilm_onnx()
    emb.find_minilm_tokenizer()
except emb.EmbeddingModelMissing as missing:  # pragma: no cover - depends on the environment
    pytest.skip(f"local embedding model not installed: {missing}", allow_module_level=True)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach the Hugging Face hub would fail, not silently download."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def embedder() -> emb.MiniLMEmbedder:
    return emb.MiniLMEmbedder(batch_size=4)


def _cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))


def test_paraphrase_ranks_above_unrelated_sentence(embedder: emb.MiniLMEmbedder) -> None:
    anchor, paraphrase, unrelated = embedder.embed(
        [
            "Think step by step before answering the question.",
            "Reason through the problem one step at a time, then reply.",
            "The quarterly revenue of the shipping company fell by ten percent.",
        ]
    )
    assert _cosine(anchor, paraphrase) > _cosine(anchor, unrelated) + 0.2


def test_vectors_are_unit_length_with_the_model_dimension(embedder: emb.MiniLMEmbedder) -> None:
    vectors = embedder.embed(["short", "a somewhat longer sentence about prompts " * 5, ""])
    assert len(vectors) == 3
    for vector in vectors:
        assert len(vector) == emb.MINILM_DIMENSION
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, abs_tol=1e-5)


def test_batching_and_padding_do_not_change_vectors(embedder: emb.MiniLMEmbedder) -> None:
    texts = [f"prompt number {i} " + "word " * (i * 7) for i in range(10)]  # 3 batches, varied lengths
    batched = np.array(embedder.embed(texts))
    one_by_one = np.array([embedder.embed([text])[0] for text in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_long_text_is_truncated_not_rejected(embedder: emb.MiniLMEmbedder) -> None:
    long_text = "word " * 2000
    (vector,) = embedder.embed([long_text])
    assert len(vector) == emb.MINILM_DIMENSION


def test_empty_input_gives_no_vectors(embedder: emb.MiniLMEmbedder) -> None:
    assert embedder.embed([]) == []


def test_embedders_satisfy_the_protocol(embedder: emb.MiniLMEmbedder) -> None:
    assert isinstance(embedder, emb.Embedder)


def test_default_embedder_is_shared_within_the_process() -> None:
    assert emb.default_embedder() is emb.default_embedder()


def test_missing_api_key_variable_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPO_TEST_EMBED_KEY", raising=False)
    with pytest.raises(emb.InputError, match="GPO_TEST_EMBED_KEY"):
        emb.OpenAIEmbedder(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="GPO_TEST_EMBED_KEY")


def test_chroma_collection_reopened_with_a_new_client_uses_the_registered_function(tmp_path) -> None:
    import chromadb

    docs = {
        "cat": "A cat is sleeping on the warm windowsill.",
        "stocks": "Shares of tech companies dropped sharply today.",
        "rain": "Heavy rain is expected over the weekend.",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation or legacy-config warnings from chromadb
        writer = chromadb.PersistentClient(path=str(tmp_path))
        collection = writer.create_collection("prompts", embedding_function=emb.ChromaEmbeddingFunction())
        collection.add(ids=list(docs), documents=list(docs.values()))
        del collection, writer

        reader = chromadb.PersistentClient(path=str(tmp_path))
        reopened = reader.get_collection("prompts")  # no embedding function passed: rebuilt by name
        assert reopened.configuration_json["embedding_function"]["name"] == emb.CHROMA_EMBEDDING_FUNCTION_NAME
        hits = reopened.query(query_texts=["the stock market fell"], n_results=1)
        assert hits["ids"] == [["stocks"]]

        # Passing the same function explicitly is not a conflict.
        explicit = reader.get_collection("prompts", embedding_function=emb.ChromaEmbeddingFunction())
        assert explicit.query(query_texts=["a kitten napping"], n_results=1)["ids"] == [["cat"]]


def test_chroma_function_embeds_like_the_embedder(embedder: emb.MiniLMEmbedder) -> None:
    function = emb.ChromaEmbeddingFunction()
    text = "Answer with a single word."
    np.testing.assert_allclose(np.asarray(function([text])[0]), embedder.embed([text])[0], atol=1e-5)
    rebuilt = emb.ChromaEmbeddingFunction.build_from_config(function.get_config())
    assert rebuilt.name() == function.name()


@pytest.fixture
def fake_embeddings_endpoint():
    """A stdlib HTTP server speaking /v1/embeddings: unnormalised vectors, rows out of order."""
    import http.server
    import json
    import threading

    seen: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"body": body, "auth": self.headers.get("Authorization", "")})
            rows = [
                {"object": "embedding", "index": i, "embedding": [10.0 * len(text), 0.0, 10.0]}
                for i, text in enumerate(body["input"])
            ]
            payload = json.dumps(
                {"object": "list", "data": rows[::-1], "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1}}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    server.shutdown()
    server.server_close()


def test_openai_embedder_normalises_and_keeps_input_order(fake_embeddings_endpoint, monkeypatch) -> None:
    base_url, seen = fake_embeddings_endpoint
    monkeypatch.setenv("GPO_TEST_EMBED_KEY", "sk-test-secret")
    embedder = emb.OpenAIEmbedder(
        base_url=base_url, model="text-embedding-x", api_key_env="GPO_TEST_EMBED_KEY", batch_size=2
    )
    vectors = embedder.embed(["a", "bbb", "cccc"])  # lengths 1, 3, 4: each vector is (len, 0, 1) scaled
    expected = [[k / math.hypot(k, 1), 0.0, 1 / math.hypot(k, 1)] for k in (1, 3, 4)]
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert [request["body"]["input"] for request in seen] == [["a", "bbb"], ["cccc"]]
    assert seen[0]["auth"] == "Bearer sk-test-secret"


TEXTS = ["What day was yesterday if today is 03/01/2024?", "Answer with the option letter only.", "hello"]


def _fresh_vectors() -> np.ndarray:
    """The model's vectors from a session built straight from the shipped file, as before the cache existed."""
    import onnxruntime as ort

    plain = emb.MiniLMEmbedder(batch_size=4)
    plain._load()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    plain._session = ort.InferenceSession(str(emb.find_minilm_onnx()), sess_options=opts,
                                          providers=["CPUExecutionProvider"])
    return plain.embed_array(TEXTS)


def test_the_optimised_graph_is_cached_once_and_gives_the_same_vectors(tmp_path) -> None:
    first = emb.MiniLMEmbedder(cache_dir=tmp_path).embed_array(TEXTS)
    entries = sorted(p.name for p in tmp_path.iterdir())
    assert len(entries) == 1 and entries[0].startswith("minilm-") and entries[0].endswith("-basic.onnx")
    stamp = (tmp_path / entries[0]).stat().st_mtime_ns
    second = emb.MiniLMEmbedder(cache_dir=tmp_path).embed_array(TEXTS)  # loads the cached graph, writes nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == entries
    assert (tmp_path / entries[0]).stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(second, _fresh_vectors(), atol=1e-6)


def test_a_damaged_cache_entry_is_rebuilt_not_fatal(tmp_path) -> None:
    from structlog.testing import capture_logs

    emb.MiniLMEmbedder(cache_dir=tmp_path).embed_array(TEXTS)
    (entry,) = tmp_path.iterdir()
    entry.write_bytes(b"not an onnx graph")
    with capture_logs() as logs:  # (where structlog prints depends on what configured it earlier in the session)
        vectors = emb.MiniLMEmbedder(cache_dir=tmp_path).embed_array(TEXTS)
    np.testing.assert_allclose(vectors, _fresh_vectors(), atol=1e-6)
    assert [e["path"] for e in logs if e["event"] == "embedder_cache_unreadable"] == [str(entry)]
    assert entry.stat().st_size > 1_000_000  # rewritten with the real graph


def test_an_unwritable_cache_costs_only_the_saving(tmp_path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")  # the cache directory cannot be created below a file
    vectors = emb.MiniLMEmbedder(cache_dir=blocked / "embedder").embed_array(TEXTS)
    np.testing.assert_allclose(vectors, _fresh_vectors(), atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["file-not-dir"]
