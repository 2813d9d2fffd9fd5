"""check_ray_auth against a stand-in GCS (a gRPC server that answers the probe call the way Ray's GCS does with
token authentication on or off): what is sent, when, and the one line for a missing or wrong token. The real
cluster: tests/integration/test_ray_token_auth.py."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from gpo_ray.runtime import ray_auth
from gpo_ray.runtime.ray_address import ClusterUnreachable
from gpo_ray.runtime.ray_auth import (
    ClusterAuthFailed,
    check_ray_auth,
    find_token,
    ray_token_values,
)

TOKEN = "right-token-0123456789abcdef"


class StandInGcs(grpc.GenericRpcHandler):
    def __init__(self, token: str | None) -> None:
        self.token = token
        self.seen: list[str | None] = []

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if details.method != ray_auth.PROBE_METHOD:
            return None  # UNIMPLEMENTED, as any other gRPC server answers

        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            sent = dict(context.invocation_metadata()).get("authorization")
            self.seen.append(sent)
            if self.token is not None and sent != f"Bearer {self.token}":
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "InvalidAuthToken: Authentication token is missing or incorrect")
            return b"\n\x00"

        return grpc.unary_unary_rpc_method_handler(answer)


def serve(handler: grpc.GenericRpcHandler) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


@pytest.fixture
def env(monkeypatch, tmp_path) -> pytest.MonkeyPatch:
    """No Ray token settings, a HOME without ~/.ray/auth_token, and token mode recorded instead of turned on
    (it would change this test process's Ray)."""
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_USE_TLS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    enabled: list[bool] = []
    monkeypatch.setattr(ray_auth, "enable_token_mode", lambda: enabled.append(True))
    monkeypatch.enabled = enabled  # type: ignore[attr-defined]
    return monkeypatch


@pytest.fixture
def auth_gcs() -> Iterator[tuple[str, StandInGcs]]:
    gcs = StandInGcs(TOKEN)
    yield from ((address, gcs) for address in serve(gcs))


def test_a_cluster_without_authentication_gets_no_token(env, tmp_path):
    (tmp_path / "home" / ".ray").mkdir(parents=True)
    (tmp_path / "home" / ".ray" / "auth_token").write_text(TOKEN)
    env.setenv("RAY_AUTH_TOKEN", TOKEN)
    gcs = StandInGcs(None)
    for address in serve(gcs):
        check_ray_auth(address, source="--address")
    assert gcs.seen == [None] and env.enabled == []


def test_the_token_from_the_environment_turns_token_mode_on(env, auth_gcs):
    address, gcs = auth_gcs
    env.setenv("RAY_AUTH_TOKEN", TOKEN)
    check_ray_auth(address, source="--address")
    assert gcs.seen == [None, f"Bearer {TOKEN}"] and env.enabled == [True]


def test_the_token_file_of_ray_auth_token_path(env, auth_gcs, tmp_path):
    address, gcs = auth_gcs
    (tmp_path / "token").write_text(TOKEN + "\n")
    env.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "token"))
    check_ray_auth(address, source="--address")
    assert gcs.seen[-1] == f"Bearer {TOKEN}" and env.enabled == [True]


def test_the_default_token_file_only_with_token_mode(env, auth_gcs, tmp_path):
    address, gcs = auth_gcs
    (tmp_path / "home" / ".ray").mkdir(parents=True)
    (tmp_path / "home" / ".ray" / "auth_token").write_text(TOKEN)
    with pytest.raises(ClusterAuthFailed, match="no token was found"):
        check_ray_auth(address, source="--address")
    assert gcs.seen == [None], "~/.ray/auth_token was sent without RAY_AUTH_MODE=token"
    env.setenv("RAY_AUTH_MODE", "token")
    check_ray_auth(address, source="--address")
    assert gcs.seen[-1] == f"Bearer {TOKEN}" and env.enabled == [], "token mode was on already"


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({}, "no token was found (neither RAY_AUTH_TOKEN nor RAY_AUTH_TOKEN_PATH is set)"),
        ({"RAY_AUTH_TOKEN": "wrong-token"}, "rejected the token from RAY_AUTH_TOKEN (not this cluster's token)"),
        ({"RAY_AUTH_TOKEN_PATH": "/nonexistent/token"}, "RAY_AUTH_TOKEN_PATH names /nonexistent/token, which cannot be read"),
        ({"RAY_AUTH_MODE": "disabled", "RAY_AUTH_TOKEN": TOKEN}, "RAY_AUTH_MODE is 'disabled' here"),
    ],
    ids=["none", "wrong", "unreadable-file", "mode-disabled"],
)
def test_a_missing_or_wrong_token_is_one_input_error(env, auth_gcs, given, said):
    address, _ = auth_gcs
    for name, value in given.items():
        env.setenv(name, value)
    with pytest.raises(ClusterAuthFailed) as e:
        check_ray_auth(address, source="the RAY_ADDRESS environment variable")
    message = str(e.value)
    assert isinstance(e.value, ClusterUnreachable) and e.value.exit_code == 2
    assert message.startswith(f"cannot join the Ray cluster at {address} (from the RAY_ADDRESS environment "
                              "variable): it requires token authentication and ")
    assert said in message and "\n" not in message and TOKEN not in message
    assert env.enabled == []


def test_what_cannot_be_asked_is_left_to_ray_init(env, auth_gcs):
    address, gcs = auth_gcs
    check_ray_auth("local", source="the default")
    check_ray_auth(f"ray://{address}", source="--address")  # the client server, not the GCS
    env.setenv("RAY_USE_TLS", "1")
    check_ray_auth(address, source="--address")
    assert gcs.seen == []
    env.delenv("RAY_USE_TLS")
    for other in serve(NotRay()):  # a gRPC server without the method: no clear answer, ray.init says more
        assert ray_auth.head_accepts(other, None, timeout_s=2) is None
        check_ray_auth(other, source="--address")
    assert ray_auth.head_accepts("127.0.0.1:1", None, timeout_s=2) is None  # nothing listens


class NotRay(grpc.GenericRpcHandler):
    def service(self, details: grpc.HandlerCallDetails) -> None:
        return None


def test_find_token_and_the_values_to_mask(env, tmp_path):
    assert find_token(default_file=True)[0] is None
    (tmp_path / "empty").write_text("\n")
    env.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "empty"))
    assert find_token(default_file=False) == (None, f" (RAY_AUTH_TOKEN_PATH names {tmp_path / 'empty'}, which is empty)")
    env.setenv("RAY_AUTH_TOKEN", f" {TOKEN}\n")
    assert find_token(default_file=False) == (TOKEN, "RAY_AUTH_TOKEN")
    (tmp_path / "home" / ".ray").mkdir(parents=True)
    (tmp_path / "home" / ".ray" / "auth_token").write_text("other-token-value")
    env.delenv("RAY_AUTH_TOKEN")
    env.delenv("RAY_AUTH_TOKEN_PATH")
    assert ray_token_values() == ["other-token-value"]
