"""Joining a Ray cluster that has token authentication (its nodes run with RAY_AUTH_MODE=token, Ray >= 2.52).

Such a cluster answers every call without the cluster's token as unauthenticated, and Ray's driver then retries
for twenty seconds, printing a C++ warning a second on stderr, and ends with "Failed to connect to Ray cluster"
(no word of a token); and a driver does not send any token unless RAY_AUTH_MODE=token is set in its own
environment: Ray never turns it on by itself for an explicit address. So before `ray.init`, `check_ray_auth`
asks the head's GCS once without a token (again, for 20 s at most, while a probe gets no answer: a head busy
under load is not taken for one without authentication); when the cluster wants one, it looks for the token
where Ray does (RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH names, else ~/.ray/auth_token), asks again with
it, and either turns token mode on for this process (and the Ray it starts) or fails at once with one line
(`ClusterAuthFailed`, an input error: exit 2).

A token is only sent when the user asked for one: RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH set, or
RAY_AUTH_MODE=token. ~/.ray/auth_token alone is not enough - every local `ray.init` writes one, and sending it to
any address given would hand a local cluster's token to whoever listens there (Ray's own rule, too).
The token itself is never put into a message, a log or a file; `ray_token_values` lists it for the redaction of
the run's logs.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable
from pathlib import Path

from gpo_ray.runtime.ray_address import ClusterUnreachable, ray_address_parts

MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = "~/.ray/auth_token"
# A GCS call every Ray client makes first (an empty request), checked for the token like every other.
PROBE_METHOD = "/ray.rpc.NodeInfoGcsService/GetClusterId"
# One probe waits this long for its answer; probes that got none (a head slow to answer under load, a connection
# not yet up) are sent again until this much time has gone by in all. Ray's own driver tries for 20 s.
PROBE_TIMEOUT_S = 5.0
PROBE_TOTAL_S = 20.0
_PROBE_PAUSE_S = 0.25  # between a probe that got no answer and the next
_HOW = f"set {TOKEN_ENV} to the cluster's token, or {TOKEN_PATH_ENV} to a file holding it"


class ClusterAuthFailed(ClusterUnreachable):
    """The Ray cluster wants a token that was not given, or rejected the one given."""


def check_ray_auth(target: str, *, source: str, timeout_s: float = PROBE_TIMEOUT_S,
                   total_s: float = PROBE_TOTAL_S) -> None:
    """For a `HOST:PORT` address: nothing when the cluster takes calls without a token, or takes the token found
    (token mode is then on in this process); else `ClusterAuthFailed` naming the address and what to do. A
    `ray://` address, a TLS cluster or a head that gives no clear answer is left to `ray.init`."""
    parts = ray_address_parts(target)
    if parts is None or target.startswith("ray://") or os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return
    host, port = parts
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if head_accepts(address, None, timeout_s=timeout_s, total_s=total_s) is not False:
        return  # no authentication there (or no answer: ray.init says what is wrong)

    def failed(what: str) -> ClusterAuthFailed:
        return ClusterAuthFailed(f"cannot join the Ray cluster at {target} (from {source}): it requires token "
                                 f"authentication and {what}")

    mode = os.environ.get(MODE_ENV, "").strip().lower()
    if mode and mode != "token":
        raise failed(f"{MODE_ENV} is {os.environ[MODE_ENV]!r} here; set {MODE_ENV}=token, and {_HOW}")
    token, where = find_token(default_file=mode == "token")
    if token is None:
        raise failed(f"no token was found{where}; {_HOW}")
    if head_accepts(address, token, timeout_s=timeout_s, total_s=total_s) is False:
        raise failed(f"rejected the token from {where} (not this cluster's token); {_HOW}")
    if mode != "token":
        enable_token_mode()


def find_token(*, default_file: bool) -> tuple[str | None, str]:
    """(the token Ray would send, where it comes from) - RAY_AUTH_TOKEN, else the file of RAY_AUTH_TOKEN_PATH,
    else (with `default_file`) ~/.ray/auth_token; (None, why) when there is none."""
    if os.environ.get(TOKEN_ENV, "").strip():
        return os.environ[TOKEN_ENV].strip(), TOKEN_ENV
    if os.environ.get(TOKEN_PATH_ENV):
        path = Path(os.environ[TOKEN_PATH_ENV]).expanduser()
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as e:
            return None, f" ({TOKEN_PATH_ENV} names {path}, which cannot be read: {e.strerror or type(e).__name__})"
        if not text:
            return None, f" ({TOKEN_PATH_ENV} names {path}, which is empty)"
        return text, f"{path} ({TOKEN_PATH_ENV})"
    if default_file:
        path = Path(DEFAULT_TOKEN_FILE).expanduser()
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError:
            text = ""
        return (text, str(path)) if text else (None, f" (not in {TOKEN_ENV}, {TOKEN_PATH_ENV} or {path})")
    return None, f" (neither {TOKEN_ENV} nor {TOKEN_PATH_ENV} is set)"


def ray_token_values() -> list[str]:
    """The Ray tokens this process could send, for redaction (whatever the mode)."""
    values = []
    for default_file in (False, True):
        token, _ = find_token(default_file=default_file)
        if token and len(token) >= 4 and token not in values:
            values.append(token)
    return values


def enable_token_mode() -> None:
    """RAY_AUTH_MODE=token for this process and the Ray processes it starts. Ray reads the mode into its config
    and caches the token once loaded: both are refreshed, as Ray does when it turns token mode on itself."""
    os.environ[MODE_ENV] = "token"
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


class ProbeAnswer(enum.Enum):
    ACCEPTED = "accepted"  # the call was taken
    REFUSED = "refused"  # UNAUTHENTICATED: the head wants a token (another one)
    OTHER = "other"  # an answer that says nothing of a token (another gRPC server): not asked again
    NONE = "none"  # no answer in time, or no connection: asked again while time is left


def probe_until_answered(probe: Callable[[float], ProbeAnswer], *, timeout_s: float, total_s: float,
                         clock: Callable[[], float] = time.monotonic,
                         sleep: Callable[[float], object] = time.sleep,
                         pause_s: float = _PROBE_PAUSE_S) -> ProbeAnswer:
    """`probe(timeout)` until it gets an answer (anything but NONE), each probe waiting at most `timeout_s` and all
    of them, with the pauses between, at most about `total_s`; NONE when no probe got one."""
    deadline = clock() + total_s
    wait = min(timeout_s, total_s)
    while True:
        answer = probe(wait)
        if answer is not ProbeAnswer.NONE:
            return answer
        left = deadline - clock() - pause_s
        if left <= 0:
            return answer
        sleep(pause_s)
        wait = min(timeout_s, left)


def probe_head(address: str, token: str | None, *, timeout_s: float) -> ProbeAnswer:
    """One probe call to the GCS at `address` with `token` (None: without one)."""
    import grpc

    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with grpc.insecure_channel(address) as channel:
        try:
            channel.unary_unary(PROBE_METHOD)(b"", metadata=metadata, timeout=timeout_s)
        except grpc.RpcError as e:
            code = e.code() if callable(getattr(e, "code", None)) else None
            if code == grpc.StatusCode.UNAUTHENTICATED:
                return ProbeAnswer.REFUSED
            if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                return ProbeAnswer.NONE
            return ProbeAnswer.OTHER
    return ProbeAnswer.ACCEPTED


def head_accepts(address: str, token: str | None, *, timeout_s: float, total_s: float | None = None) -> bool | None:
    """Whether the GCS at `address` takes a call with `token` (None: without one); None when it does not say
    (unreachable, another server, a timeout). A probe that got no answer is sent again until an answer comes or
    `total_s` (default: `timeout_s`) has gone by."""
    answer = probe_until_answered(lambda wait: probe_head(address, token, timeout_s=wait), timeout_s=timeout_s,
                                  total_s=timeout_s if total_s is None else total_s)
    return {ProbeAnswer.ACCEPTED: True, ProbeAnswer.REFUSED: False}.get(answer)
