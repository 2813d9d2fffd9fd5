"""Word-level edit distance: how GPO measures the size of a prompt update.

The budget counts words, not characters, so a distance here is the Levenshtein distance between
the two prompts split on whitespace (insert, delete or replace one word = 1). Comparison is exact:
"Think" and "think" are different words, as they are to the task model.
"""

from __future__ import annotations


def word_edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between the whitespace-split word lists of a and b."""
    xs, ys = a.split(), b.split()
    # A shared prefix and suffix cost nothing; trimming them keeps typical small edits cheap.
    start = 0
    while start < len(xs) and start < len(ys) and xs[start] == ys[start]:
        start += 1
    end_x, end_y = len(xs), len(ys)
    while end_x > start and end_y > start and xs[end_x - 1] == ys[end_y - 1]:
        end_x -= 1
        end_y -= 1
    xs, ys = xs[start:end_x], ys[start:end_y]
    if len(xs) < len(ys):
        xs, ys = ys, xs
    if not ys:
        return len(xs)
    previous = list(range(len(ys) + 1))
    for i, x in enumerate(xs, start=1):
        current = [i] + [0] * len(ys)
        for j, y in enumerate(ys, start=1):
            current[j] = min(
                previous[j] + 1,  # delete x
                current[j - 1] + 1,  # insert y
                previous[j - 1] + (x != y),  # keep or replace
            )
        previous = current
    return previous[-1]


def within_budget(old: str, new: str, budget: int) -> bool:
    """True when new differs from old by at most `budget` words."""
    return word_edit_distance(old, new) <= budget
