"""Which Chroma-server errors the memory actor waits out (a server that is down or restarting) and which it
reports at once (the server's own answers)."""

from __future__ import annotations

import socket

import chromadb
import pytest

from gpo_ray.actors.memory import server_unreachable


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_a_client_made_while_the_server_is_down_is_retried() -> None:
    # chromadb's HttpClient() raises ValueError("Could not connect ...") from the connection error: a memory actor
    # started (or restarted) while its server restarts must wait for it, not die.
    with pytest.raises(Exception) as caught:
        chromadb.HttpClient(host="127.0.0.1", port=closed_port())
    assert not isinstance(caught.value, ConnectionError)  # wrapped, as chromadb does it
    assert server_unreachable(caught.value)


def test_the_server_s_own_answers_are_not_retried() -> None:
    assert not server_unreachable(ValueError("Collection gpo_trajectory does not exist"))
    wrapped = RuntimeError("bad request")
    wrapped.__cause__ = KeyError("x")
    assert not server_unreachable(wrapped)
