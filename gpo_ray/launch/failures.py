"""What ends a run or a sweep early, named in one line with the resume hint: the root cause behind an exception
as it comes from an actor (RayTaskError.cause) or through causes and contexts."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import structlog

from gpo_ray.errors import InputError, MetricErrorsExceeded, RunFailed
from gpo_ray.llm.errors import LLMError


@contextlib.contextmanager
def failures_named(resume_hint: str, *, event: str = "run_failed") -> Iterator[None]:
    """What ends a run or sweep early becomes one line with the resume hint: a dead embedded server
    (LocalServerDied, named at once instead of retried), or the LLM error behind a failure (RunFailed)."""
    from gpo_ray.llm.local_server import LocalServerDied

    log = structlog.get_logger()
    try:
        yield
    except LocalServerDied as e:
        log.error(event, error=str(e), kind="local_server_died")
        raise LocalServerDied(f"{e}; {resume_hint}") from None
    except MetricErrorsExceeded as e:
        log.error(event, error=str(e), kind="metric_errors")
        raise MetricErrorsExceeded(f"{e}; {resume_hint}") from None
    except Exception as e:
        cause = llm_error_in(e)
        if cause is None:
            unimportable = metric_import_error_in(e)
            if unimportable is None:
                raise
            log.error(event, error=str(unimportable), kind="metric_import")
            raise InputError(f"on an evaluator: {unimportable}; {resume_hint}") from None
        log.error(event, error=str(cause), kind=cause.kind)
        raise RunFailed(f"{cause}; {resume_hint}") from None


def _root_cause(exc: BaseException, matches: Callable[[BaseException], bool]) -> BaseException | None:
    """The first exception behind `exc` (its causes and contexts, and RayTaskError.cause when it comes wrapped from
    an actor) that `matches` and is not itself a wrapper of another."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "cause", None)
        if matches(e) and not isinstance(cause, BaseException):
            return e
        stack += [cause if isinstance(cause, BaseException) else None, e.__cause__, e.__context__]
    return None


def metric_import_error_in(exc: BaseException) -> InputError | None:
    """A metric function an evaluator could not import (tasks/metric_functions.py), as it comes from the actor."""
    found = _root_cause(exc, lambda e: isinstance(e, InputError) and str(e).startswith("metric function "))
    return found if isinstance(found, InputError) else None


def llm_error_in(exc: BaseException) -> LLMError | None:
    """The LLM error behind an exception, also when it comes wrapped from an actor (RayTaskError.cause)."""
    found = _root_cause(exc, lambda e: isinstance(e, LLMError))
    return found if isinstance(found, LLMError) else None
