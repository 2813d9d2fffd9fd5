"""The scripted task model's calculator: "What is 3 + 4?" answered without an answer key, and never by eval()."""

from __future__ import annotations

import ast
import math
import re

_WORD_OPERATORS = (
    (re.compile(r"\bmultiplied by\b", re.IGNORECASE), "*"),
    (re.compile(r"\bdivided by\b", re.IGNORECASE), "/"),
    (re.compile(r"\btimes\b", re.IGNORECASE), "*"),
    (re.compile(r"\bplus\b", re.IGNORECASE), "+"),
    (re.compile(r"\bminus\b", re.IGNORECASE), "-"),
)
_EXPRESSION = re.compile(r"[-+*/()\d.\s]+")
_HAS_OPERATION = re.compile(r"\d\s*\)*\s*[-+*/]\s*\(*\s*-?\d")


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        if abs(node.value) > 1e12:
            raise ValueError("number too large")
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            result = left * right
            if abs(result) > 1e18:
                raise ValueError("result too large")
            return result
        return left / right
    raise ValueError(f"not arithmetic: {type(node).__name__}")


def format_number(value: float) -> str:
    if math.isfinite(value) and abs(value - round(value)) < 1e-9:
        return str(int(round(value)))
    return f"{value:.6g}"


def solve_arithmetic(text: str) -> tuple[str, str] | None:
    """(expression, answer) for the longest evaluable arithmetic expression in the text, e.g. "What is 3 + 4?"."""
    for pattern, operator in _WORD_OPERATORS:
        text = pattern.sub(operator, text)
    best: tuple[str, str] | None = None
    for match in _EXPRESSION.finditer(text):
        expr = match.group().strip().rstrip(".").strip()
        if not _HAS_OPERATION.search(expr) or (best is not None and len(expr) <= len(best[0])):
            continue
        try:
            value = _evaluate(ast.parse(expr, mode="eval"))
        except (SyntaxError, ValueError, ZeroDivisionError, RecursionError, OverflowError):
            continue
        best = (re.sub(r"\s+", "", expr), format_number(value))
    return best
