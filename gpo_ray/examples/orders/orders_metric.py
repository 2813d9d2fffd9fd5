"""The orders example's metric: the reply must be one JSON object that the schema accepts, with each field equal to
the order's. A score in [0, 1] (a quarter per correct field) and, where the reply falls short, what was wrong: the
optimizer reads it with `direction: feedback`."""

import json

from jsonschema import Draft202012Validator

SCHEMA = {
    "type": "object",
    "properties": {
        "customer": {"type": "string", "minLength": 1},
        "product": {"type": "string", "minLength": 1},
        "quantity": {"type": "integer", "minimum": 1},
        "city": {"type": "string", "minLength": 1},
    },
    "required": ["customer", "product", "quantity", "city"],
}
FIELDS = ("customer", "product", "quantity", "city")
_VALIDATOR = Draft202012Validator(SCHEMA)
_DECODER = json.JSONDecoder()


def first_object(reply):
    """The first JSON object in the reply (bare, fenced or inside prose; the outermost where they nest), or None."""
    for start in (i for i, c in enumerate(reply) if c == "{"):
        try:
            value, _ = _DECODER.raw_decode(reply, start)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _same(field, said, expected):
    if field == "quantity":
        return said == expected
    return isinstance(said, str) and said.strip().lower().rstrip("s") == str(expected).lower().rstrip("s")


def score(example, reply):  # example: the row's columns (customer, product, quantity, city, ...), plus id and input
    found = first_object(reply)
    if found is None:
        return 0.0, "the reply has no JSON object; it must be one object with customer, product, quantity, city"
    invalid = {e.path[0] for e in _VALIDATOR.iter_errors(found) if e.path}  # fields the schema refuses
    problems = []
    missing = [f for f in FIELDS if f not in found]
    if missing:
        problems.append("missing " + ", ".join(missing))
    for f in FIELDS:
        if f in invalid:
            kind = "a whole number" if f == "quantity" else "a non-empty string"
            problems.append(f"{f} must be {kind}, not {json.dumps(found[f])[:40]}")
        elif f in found and not _same(f, found[f], example[f]):
            problems.append(f"{f} is {json.dumps(found[f])[:40]}, the order says {json.dumps(example[f])}")
    if not problems:
        return 1.0
    right = sum(1 for f in FIELDS if f in found and f not in invalid and _same(f, found[f], example[f]))
    return right / len(FIELDS), "; ".join(problems)
