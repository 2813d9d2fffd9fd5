"""check_ray_auth's probe sent again when it got no answer (a busy head under load, a connection not yet up),
within a bounded total time, and never again once the head has answered, with a refusal above all: the retry logic
alone (`probe_until_answered`), on a clock of the test's own. The probe against a stand-in GCS:
tests/unit/test_ray_auth.py."""

from __future__ import annotations

import pytest

from gpo_ray.runtime.ray_auth import PROBE_TIMEOUT_S, PROBE_TOTAL_S, ProbeAnswer, probe_until_answered


class Head:
    """Answers the probes in turn from `answers`; a probe with no answer takes its whole timeout."""

    def __init__(self, *answers: ProbeAnswer) -> None:
        self.answers = list(answers)
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def probe(self, timeout_s: float) -> ProbeAnswer:
        self.waits.append(timeout_s)
        answer = self.answers.pop(0) if self.answers else ProbeAnswer.NONE
        self.now += timeout_s if answer is ProbeAnswer.NONE else 0.01
        return answer

    def ask(self, *, timeout_s: float = PROBE_TIMEOUT_S, total_s: float = PROBE_TOTAL_S) -> ProbeAnswer:
        return probe_until_answered(self.probe, timeout_s=timeout_s, total_s=total_s, clock=self.clock,
                                    sleep=self.sleep)


@pytest.mark.parametrize("answer", [ProbeAnswer.ACCEPTED, ProbeAnswer.REFUSED, ProbeAnswer.OTHER])
def test_an_answer_is_taken_at_once(answer):
    head = Head(answer)
    assert head.ask() is answer
    assert head.waits == [PROBE_TIMEOUT_S]


@pytest.mark.parametrize("answer", [ProbeAnswer.ACCEPTED, ProbeAnswer.REFUSED])
def test_a_busy_head_is_asked_again_until_it_answers(answer):
    head = Head(ProbeAnswer.NONE, ProbeAnswer.NONE, answer)  # 10 s of silence, then the answer
    assert head.ask() is answer
    assert head.waits == [PROBE_TIMEOUT_S] * 3


def test_a_refusal_is_never_asked_again():
    head = Head(ProbeAnswer.REFUSED, ProbeAnswer.ACCEPTED)
    assert head.ask() is ProbeAnswer.REFUSED
    assert len(head.waits) == 1


def test_a_head_that_never_answers_is_given_up_on_within_the_total_time():
    head = Head()
    assert head.ask(timeout_s=5.0, total_s=12.0) is ProbeAnswer.NONE
    assert head.now <= 12.0
    assert head.waits[:2] == [5.0, 5.0] and 0 < head.waits[-1] < 5.0  # the last probe gets what time is left
    assert len(head.waits) == 3


def test_a_refused_connection_is_retried_with_pauses_not_in_a_tight_loop():
    head = Head()
    head.probe = lambda timeout_s: head.waits.append(timeout_s) or ProbeAnswer.NONE  # refused at once: no time
    assert head.ask(timeout_s=5.0, total_s=2.0) is ProbeAnswer.NONE
    assert head.now <= 2.0
    assert 2 <= len(head.waits) <= 2.0 / 0.2  # a pause between probes
