"""Which scripted model answers a request: the one its metadata names, else the one its prose suggests.

gpo-ray sends with every request its role and purpose as HTTP headers outside the body - X-GPO-Role
(task_model | optimizer | judge) and X-GPO-Purpose (answer | second_turn | candidates | feedback | summarize | judge),
set by the client's transport (llm/transport.py) - and in-process `ChatRequest.purpose` says the same. The fake
decides by them (`route`):

- a purpose names the model: answer and second_turn the task model, candidates the optimizer, feedback the
  feedback reasons, summarize the summarizer, judge the judge. The prose is then read only for what the reply is
  made of (the current prompt in a candidate request, the latest prompt or problems in a summarize request, the
  scale, reference and reply in a judge request), never to decide what the request is: a reworded meta-prompt, or a
  template that happens to open like another request, still reaches the right model.
- a role without a purpose: judge -> the judge; task_model -> the task model; optimizer -> its requests told apart
  by their prose (candidates unless a feedback or summarize request is recognised).
- neither - a request made by hand (curl, another client, an older gpo-ray) - falls back to sniffing the prose as
  the fake always did (`sniff`): a system message that is tasks/judge.py's JUDGE_SYSTEM is a judge request; the
  feedback and summarize requests are known by their opening sentences (the official GPO text, core/paper_text.py)
  or their byte-exact blocks (<wrong_examples>, <latest_prompt>, <current_problems>: core/variants.py); a request
  with a <current_prompt> block (core/meta_prompt.py) or the official text's current prompt is a candidate request;
  anything else is the task model's. This is the fallback only: rewording those texts breaks it, not the routing
  of gpo-ray's own requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpo_ray.core import paper_text, rival_text, variants
from gpo_ray.llm.protocol import PURPOSES, ROLES, ChatMessage, ChatRequest
from gpo_ray.vocabulary import Purpose, Role

PROMPT_OPEN = "<current_prompt>\n"
PROMPT_CLOSE = "\n</current_prompt>"

PAPER_OPEN = paper_text.CURRENT.split("{prompt}")[0]
# The exemplars' introduction after the current prompt: generation's, or editing's with retrieved prompts.
PAPER_CLOSES = tuple(
    paper_text.CURRENT.split("{prompt}")[1] + intro
    for intro in (paper_text.EXEMPLARS_INTRO, paper_text.EDIT_EXEMPLARS_INTRO_WITH_HISTORY,
                  paper_text.GRADIENT_BLOCK.split("{gradient}")[0])  # ... or the feedback (direction feedback)
)
# Where a summarize request holds what it summarizes, own blocks first: (kind, opening, closing).
_OWN_LATEST = (variants.LATEST_PROMPT_OPEN + "\n", "\n" + variants.LATEST_PROMPT_CLOSE)
_OWN_PROBLEMS = (variants.CURRENT_PROBLEMS_OPEN + "\n", "\n" + variants.CURRENT_PROBLEMS_CLOSE)
_PAPER_LATEST = ("Below is the current prompt with its score.\nPrompt: ", "\nScore: ")
_PAPER_PROBLEMS = ("Below are the problems of the current prompt.\n", "\n\nYou should integrate")
_SUMMARIZED = (
    ("summarize_prompts", *_OWN_LATEST),
    ("summarize_feedback", *_OWN_PROBLEMS),
    ("summarize_prompts", *_PAPER_LATEST),
    ("summarize_feedback", *_PAPER_PROBLEMS),
)

# The scripted model that answers each purpose: the names of GET /stats "roles" and the request log's "role".
SCRIPTED_MODEL = {
    Purpose.ANSWER: "task",
    Purpose.SECOND_TURN: "task",
    Purpose.CANDIDATES: "optimizer",
    Purpose.FEEDBACK: "feedback",
    Purpose.SUMMARIZE: "summarize",
    Purpose.JUDGE: "judge",
}
BY_PURPOSE, BY_ROLE, BY_CONTENT = "purpose", "role", "content"


@dataclass(frozen=True)
class Route:
    """What a request is (`purpose`), and what said so: its purpose, its role (the prose told the optimizer's
    requests apart), or its content alone (no metadata: sniffed)."""

    purpose: Purpose
    by: str  # BY_PURPOSE | BY_ROLE | BY_CONTENT

    @property
    def model(self) -> str:
        return SCRIPTED_MODEL[self.purpose]


class UnknownMetadata(ValueError):
    """An X-GPO-Role or X-GPO-Purpose value outside the vocabulary (the fake answers it with 400)."""


def route(request: ChatRequest, *, role: str | None = None) -> Route:
    """What `request` is: by its purpose, else by `role` (the X-GPO-Role header, if any), else by its prose."""
    if request.purpose is not None:
        return Route(Purpose(request.purpose), BY_PURPOSE)
    if role is not None:
        if role == Role.JUDGE:
            return Route(Purpose.JUDGE, BY_ROLE)
        if role == Role.TASK_MODEL:
            return Route(_task_purpose(request.messages), BY_ROLE)
        if role == Role.OPTIMIZER:
            return Route(_optimizer_purpose(_user_text(request)) or Purpose.CANDIDATES, BY_ROLE)
        raise UnknownMetadata(f"unknown X-GPO-Role {role!r}: one of {sorted(ROLES)}")
    return Route(sniff(request), BY_CONTENT)


def metadata(role: str | None, purpose: str | None) -> tuple[str | None, Purpose | None]:
    """The X-GPO-Role and X-GPO-Purpose header values, checked; UnknownMetadata for a word outside the vocabulary."""
    if role is not None and role not in ROLES:
        raise UnknownMetadata(f"unknown X-GPO-Role {role!r}: one of {sorted(ROLES)}")
    if purpose is not None and purpose not in PURPOSES:
        raise UnknownMetadata(f"unknown X-GPO-Purpose {purpose!r}: one of {sorted(PURPOSES)}")
    return role, Purpose(purpose) if purpose is not None else None


def sniff(request: ChatRequest) -> Purpose:
    """The fallback for a request without metadata: what its prose looks like (the module docstring's order)."""
    if is_judge_request(request):
        return Purpose.JUDGE
    user_text = _user_text(request)
    optimizer = _optimizer_purpose(user_text)
    if optimizer is not None:
        return optimizer
    if current_prompt_of(user_text) is not None:
        return Purpose.CANDIDATES
    return _task_purpose(request.messages)


def is_judge_request(request: ChatRequest) -> bool:
    """Whether the request opens with tasks/judge.py's JUDGE_SYSTEM as its system message (sniffing)."""
    from gpo_ray.tasks import judge

    first = request.messages[0] if request.messages else None
    return first is not None and first.role == "system" and first.content == judge.JUDGE_SYSTEM


def _user_text(request: ChatRequest) -> str:
    return "\n".join(m.content for m in request.messages if m.role == "user")


def _task_purpose(messages: tuple[ChatMessage, ...]) -> Purpose:
    """A task-model request with an assistant turn in it asks the second turn's question."""
    return Purpose.SECOND_TURN if any(m.role == "assistant" for m in messages) else Purpose.ANSWER


def _optimizer_purpose(user_text: str) -> Purpose | None:
    found = auxiliary_request(user_text)
    if found is None:
        return None
    return Purpose.FEEDBACK if found[0] == "feedback" else Purpose.SUMMARIZE


def between(text: str, open_: str, close: str) -> str | None:
    """The text between the first `open_` and the `close` after it, or None."""
    start = text.find(open_)
    if start < 0:
        return None
    start += len(open_)
    end = text.find(close, start)
    return text[start:end] if end >= 0 else None


def auxiliary_request(text: str) -> tuple[str, str | None] | None:
    """Sniffing: ("feedback", None), ("summarize_prompts", current prompt), ("summarize_feedback", current problems),
    or None for a candidate or task request."""
    paper_feedback = paper_text.FEEDBACK_REQUEST.split("\n")[0]
    paper_prompts = paper_text.SUMMARIZE_PROMPTS_REQUEST.split("\n")[0]
    paper_problems = paper_text.SUMMARIZE_FEEDBACK_REQUEST.split("\n")[0]
    if text.startswith(paper_feedback) or variants.WRONG_EXAMPLES_OPEN + "\n" in text:
        return "feedback", None
    if text.startswith(paper_prompts):
        return "summarize_prompts", between(text, *_PAPER_LATEST)
    if _OWN_LATEST[0] in text:
        return "summarize_prompts", between(text, *_OWN_LATEST)
    if text.startswith(paper_problems):
        return "summarize_feedback", between(text, *_PAPER_PROBLEMS)
    if _OWN_PROBLEMS[0] in text:
        return "summarize_feedback", between(text, *_OWN_PROBLEMS)
    return None


def summarized(text: str) -> tuple[str, str | None]:
    """What a summarize request merges: ("summarize_prompts", the latest prompt) or ("summarize_feedback", the current
    problems), found by the own blocks or the official text's lines, whatever the request's wording around them;
    ("summarize_prompts", None) when neither is there."""
    for kind, open_, close in _SUMMARIZED:
        found = between(text, open_, close)
        if found is not None:
            return kind, found
    return "summarize_prompts", None


def current_prompt_of(text: str) -> str | None:
    """The prompt inside the meta-prompt's <current_prompt> block (or the paper text's current prompt), or None."""
    start = text.find(PROMPT_OPEN)
    if start < 0:
        if not text.startswith((paper_text.TASK, paper_text.EDIT_TASK)):  # optimizer.update generate | edit
            return None
        start = text.find(PAPER_OPEN)
        ends = [text.find(close, start + len(PAPER_OPEN)) for close in PAPER_CLOSES] if start >= 0 else []
        ends = [e for e in ends if e >= 0]
        return text[start + len(PAPER_OPEN):min(ends)] if ends else None
    start += len(PROMPT_OPEN)
    end = text.find(PROMPT_CLOSE, start)
    return text[start:end] if end >= 0 else None


# The rival methods' candidate requests (core/rival_text.py): where each holds the prompt to build on.
_RESAMPLE_OPEN = rival_text.RESAMPLE_TEMPLATE.split("{prompt}")[0]
_RESAMPLE_CLOSE = rival_text.RESAMPLE_TEMPLATE.split("{prompt}")[1]
_APO_OPEN, _APO_CLOSE = 'My current prompt is:\n"', '"\n\nBut'
_OPRO_OPEN, _OPRO_CLOSE = "\ntext:\n", "\nscore:\n"


def rival_prompt_of(text: str) -> str | None:
    """The prompt a rival method's candidate request builds on - a resampling's instruction, APO's current prompt,
    OPRO's best-scored instruction (the last shown: they are shown by score ascending) - or None (APE's proposal
    from demos builds on none). Read only for what the reply is made of: the request's purpose says what it is."""
    if text.startswith(_RESAMPLE_OPEN):
        return between(text, _RESAMPLE_OPEN, _RESAMPLE_CLOSE)
    if _APO_OPEN in text:
        return between(text, _APO_OPEN, _APO_CLOSE)
    start = text.rfind(_OPRO_OPEN)
    if start >= 0:
        return between(text[start:], _OPRO_OPEN, _OPRO_CLOSE)
    return None


def chat_request(body: dict[str, Any], *, purpose: str | None = None) -> ChatRequest:
    """The ChatRequest an OpenAI chat-completions body asks for (the body's messages are already checked), with the
    purpose its X-GPO-Purpose header gave."""
    fmt = body.get("response_format") or {}
    schema = None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {}  # JSON was asked for, even without a schema
    stop = body.get("stop")
    return ChatRequest(
        messages=tuple(ChatMessage(str(m.get("role") or ""), str(m.get("content") or "")) for m in body["messages"]),
        max_tokens=body.get("max_tokens") or body.get("max_completion_tokens"),
        seed=body.get("seed"),
        json_schema=schema,
        stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
        purpose=purpose,
    )
