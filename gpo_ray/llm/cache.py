"""An on-disk response cache shared by processes (Ray workers), and the layer that consults it.

sqlite in WAL mode with a busy timeout lets several processes read and write one file at once. Each
process and thread has its own connection, opened lazily; a copy that arrives by fork or pickle
notices the new pid and opens its own. sqlite calls run in a worker thread so the event loop keeps
serving other requests. The key is `ChatRequest.cache_key(model)`; the value holds only the reply
text, usage and finish reason - never a key or URL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from gpo_ray.llm.protocol import ChatRequest, ChatResponse, LLMClient, Usage

CACHE_FILE_NAME = "llm-responses.sqlite3"
_BUSY_TIMEOUT_MS = 30_000
_SCHEMA = "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"


def encode_response(response: ChatResponse) -> str:
    return json.dumps(
        {
            "text": response.text,
            "prompt_tokens": response.usage.prompt_tokens,
            "completion_tokens": response.usage.completion_tokens,
            "finish_reason": response.finish_reason,
        },
        ensure_ascii=False,
    )


def decode_response(value: str) -> ChatResponse:
    data = json.loads(value)
    return ChatResponse(
        text=str(data["text"]),
        usage=Usage(prompt_tokens=int(data["prompt_tokens"]), completion_tokens=int(data["completion_tokens"])),
        finish_reason=data.get("finish_reason"),
        cached=True,
    )


class ResponseCache:
    """Responses by cache key in `directory/llm-responses.sqlite3`. Pickles as its directory only."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._reset_connections()

    @property
    def path(self) -> Path:
        return self.directory / CACHE_FILE_NAME

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.directory)!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": str(self.directory)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.directory = Path(state["directory"])
        self._reset_connections()

    def _reset_connections(self) -> None:
        self._pid = os.getpid()
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # a forked copy must not share the parent's connections
            self._reset_connections()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
            self._local.conn = conn
            with self._opened_lock:
                self._opened.append(conn)
        return conn

    def get_sync(self, key: str) -> ChatResponse | None:
        row = self._connection().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return decode_response(row[0])
        except (ValueError, KeyError, TypeError):
            structlog.get_logger(__name__).warning("llm_cache_entry_unreadable", key=key[:16])
            return None

    def put_sync(self, key: str, response: ChatResponse) -> None:
        self._connection().execute(
            "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
            (key, encode_response(response), time.time()),
        )

    async def get(self, key: str) -> ChatResponse | None:
        return await asyncio.to_thread(self.get_sync, key)

    async def put(self, key: str, response: ChatResponse) -> None:
        await asyncio.to_thread(self.put_sync, key, response)

    def __len__(self) -> int:
        return int(self._connection().execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        """Close the connections this process opened (call once its threads are done with the cache)."""
        if self._pid != os.getpid():
            self._reset_connections()
            return
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
        self._local = threading.local()


class CachedClient:
    """Answers repeated requests from the cache; stores only successful responses.

    Identical requests that arrive while the first is still in flight wait for it instead of
    asking the endpoint again, and count as cache hits. A cache that cannot be read or written (disk
    full, read-only) is a miss with a warning, not a failure: the run's checkpoints are what must be
    written, and their write stops the run with a clear error.
    """

    def __init__(self, inner: LLMClient, *, cache: ResponseCache, model: str) -> None:
        self.inner = inner
        self.cache = cache
        self.model = model
        self._in_flight: dict[str, asyncio.Future[ChatResponse]] = {}

    async def complete(self, request: ChatRequest) -> ChatResponse:
        key = request.cache_key(self.model)
        shared = await self._join_in_flight(key)
        if shared is not None:
            return shared
        # Claim the key before reading the cache (no await in between): an identical request arriving while we
        # read or ask waits for us, instead of racing us to the endpoint.
        future: asyncio.Future[ChatResponse] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            hit = await self._read(key)
            if hit is not None:
                future.set_result(hit)
                return hit
            response = await self.inner.complete(request)
            await self._write(key, response)
        except asyncio.CancelledError:
            future.cancel()  # waiters notice and ask for themselves
            raise
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: there may be no waiter
            raise
        else:
            future.set_result(response)
            return response
        finally:
            self._in_flight.pop(key, None)

    async def _read(self, key: str) -> ChatResponse | None:
        try:
            return await self.cache.get(key)
        except (sqlite3.Error, OSError) as e:
            structlog.get_logger(__name__).warning("llm_cache_unreadable", path=str(self.cache.path), error=str(e))
            return None

    async def _write(self, key: str, response: ChatResponse) -> None:
        try:
            await self.cache.put(key, response)
        except (sqlite3.Error, OSError) as e:
            structlog.get_logger(__name__).warning("llm_cache_unwritable", path=str(self.cache.path), error=str(e))

    async def _join_in_flight(self, key: str) -> ChatResponse | None:
        """The response of an identical request already in flight (as a cache hit), or None if there is none."""
        while (pending := self._in_flight.get(key)) is not None:
            try:
                response = await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if pending.cancelled() and (task is None or task.cancelling() == 0):
                    continue  # the leader was cancelled, not us: look again, maybe lead ourselves
                raise
            return dataclasses.replace(response, cached=True)
        return None

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()
