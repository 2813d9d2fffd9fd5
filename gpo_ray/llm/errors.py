"""Typed LLM errors. The retry layer decides on `retryable`; messages name endpoint and model, never a key."""

from __future__ import annotations


class LLMError(Exception):
    retryable: bool = False
    kind: str = "llm_error"  # for counters; the transport sets a finer one (server_error, timeout, auth, quota, ...)

    def __init__(self, message: str, *, endpoint: str = "", model: str = "", retry_after: float | None = None):
        where = f" [endpoint={endpoint} model={model}]" if endpoint or model else ""
        super().__init__(f"{message}{where}")
        self.endpoint = endpoint
        self.model = model
        self.retry_after = retry_after


class RetryableLLMError(LLMError):
    """429, 408, 409, 5xx, timeouts, connection errors."""

    retryable = True
    kind = "retryable"


class RateLimited(RetryableLLMError):
    kind = "rate_limited"


class MalformedResponse(RetryableLLMError):
    """Empty choices, a non-JSON body, missing content: retried a bounded number of times."""

    kind = "malformed"


class OversizedResponse(MalformedResponse):
    """A reply larger than the request could produce (judged from max_tokens, capped): not read further, not
    cached, retried as a malformed body is."""

    kind = "oversized"


class StalledResponse(RetryableLLMError):
    """The reply's headers came, then the body stopped arriving for longer than the read timeout."""

    kind = "stalled"


class FatalLLMError(LLMError):
    """400/401/403/404 and insufficient quota: never retried."""

    retryable = False
    kind = "fatal"


class EndpointUnavailable(LLMError):
    """Retries exhausted: the run stops cleanly and can be resumed."""

    kind = "unavailable"
