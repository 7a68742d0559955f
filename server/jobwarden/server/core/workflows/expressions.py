"""CEL expressions and the templates made of them (cel-python: a safe, well-kept CEL; no ``eval``).

A condition is a CEL expression that must give a bool. A template is a JSON value in which a string
of the exact form ``"{{ EXPR }}"`` becomes the value of EXPR (keeping its type) and ``{{ EXPR }}``
inside a longer string becomes the value's text. Every expression is compiled when its definition is
put (``compile_expression``, ``Template``); evaluating one that fails raises ``ExpressionError``,
whose message names the expression and CEL's error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import celpy
import orjson
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError
from jobwarden.contract import WorkflowLimits
from lark import Token, Tree

__all__ = ["Expression", "ExpressionError", "Template", "compile_expression", "to_cel"]

#: the names every expression may use (plus a comprehension's own variables)
NAMES = frozenset({"input", "context", "steps", "step"})
_TEMPLATE_RE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_WHOLE_RE = re.compile(r"^\{\{(.*)\}\}$", re.DOTALL)
_MACROS = frozenset({"map", "filter", "all", "exists", "exists_one"})

# cel-python logs every evaluation at DEBUG, which would flood a debug log of the engine.
logging.getLogger("celpy").setLevel(logging.WARNING)
_ENV = celpy.Environment()


class ExpressionError(Exception):
    """An expression that does not compile, or failed when evaluated; ``message`` says which and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(slots=True, frozen=True)
class Expression:
    text: str
    program: Any
    #: the step names it reads through ``steps.NAME`` or ``steps["NAME"]``
    steps: frozenset[str]
    #: whether it reads ``step`` (an edge's source)
    uses_step: bool

    def evaluate(self, activation: dict[str, Any]) -> Any:
        """The value as JSON (``dict``, ``list``, ``str``, numbers, bools, None)."""
        try:
            value = self.program.evaluate(activation)
        except CELEvalError as error:
            raise ExpressionError(f"{{{{ {self.text} }}}} failed: {_eval_message(error)}") from None
        except Exception as error:  # a CEL runtime fault of any kind is the expression's error
            raise ExpressionError(f"{{{{ {self.text} }}}} failed: {type(error).__name__}: {error}") from None
        if isinstance(value, CELEvalError):
            raise ExpressionError(f"{{{{ {self.text} }}}} failed: {_eval_message(value)}")
        return from_cel(value)

    def evaluate_bool(self, activation: dict[str, Any]) -> bool:
        value = self.evaluate(activation)
        if not isinstance(value, bool):
            raise ExpressionError(f"condition {self.text!r} gave {value!r}, not a bool")
        return value


def compile_expression(text: str) -> Expression:
    """``text`` compiled; ExpressionError when it does not parse or names an unknown variable."""
    text = text.strip()
    if not text:
        raise ExpressionError("an empty expression")
    if len(text) > WorkflowLimits.MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"an expression longer than {WorkflowLimits.MAX_EXPRESSION_LENGTH} characters")
    try:
        ast = _ENV.compile(text)
        program = _ENV.program(ast)
    except Exception as error:
        detail = " ".join(str(error).split())
        raise ExpressionError(f"{text!r} does not compile: {detail}") from None
    roots, steps, macros = _names(ast)
    unknown = sorted(roots - NAMES)
    if unknown and not macros:
        raise ExpressionError(
            f"{text!r} names {', '.join(unknown)}: an expression may use only input, context, steps "
            "and (on an edge) step"
        )
    return Expression(text, program, frozenset(steps), "step" in roots)


class Template:
    """A JSON value with ``{{ EXPR }}`` strings in it, compiled once."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.expressions: list[Expression] = []
        self._compiled: dict[str, Expression] = {}
        for text in _template_strings(value):
            for match in _TEMPLATE_RE.finditer(text):
                source = match.group(1).strip()
                if source not in self._compiled:
                    expression = compile_expression(source)
                    self._compiled[source] = expression
                    self.expressions.append(expression)
        if "{{" in orjson.dumps(_strip_expressions(value)).decode():
            raise ExpressionError("a '{{' without its closing '}}'")

    @property
    def steps(self) -> frozenset[str]:
        return frozenset().union(*(e.steps for e in self.expressions)) if self.expressions else frozenset()

    @property
    def uses_step(self) -> bool:
        return any(e.uses_step for e in self.expressions)

    def render(self, activation: dict[str, Any]) -> Any:
        if not self.expressions:
            return self.value
        return self._render(self.value, activation)

    def _render(self, value: Any, activation: dict[str, Any]) -> Any:
        if isinstance(value, str):
            whole = _WHOLE_RE.match(value.strip())
            if whole and "{{" not in whole.group(1):
                return self._compiled[whole.group(1).strip()].evaluate(activation)

            def substitute(match: re.Match[str]) -> str:
                result = self._compiled[match.group(1).strip()].evaluate(activation)
                return result if isinstance(result, str) else orjson.dumps(result).decode()

            return _TEMPLATE_RE.sub(substitute, value)
        if isinstance(value, dict):
            return {k: self._render(v, activation) for k, v in value.items()}
        if isinstance(value, list):
            return [self._render(v, activation) for v in value]
        return value


def to_cel(value: Any) -> Any:
    """A JSON value as CEL sees it (for an activation)."""
    return json_to_cel(value)


def from_cel(value: Any) -> Any:
    """A CEL value as JSON: ints stay ints, timestamps, durations and bytes become their text."""
    if value is None or isinstance(value, celtypes.NullType):
        return None
    if isinstance(value, celtypes.BoolType | bool):
        return bool(value)
    if isinstance(value, celtypes.IntType | celtypes.UintType):
        return int(value)
    if isinstance(value, celtypes.DoubleType | float):
        return float(value)
    if isinstance(value, celtypes.StringType | str):
        return str(value)
    if isinstance(value, celtypes.MapType | dict):
        return {str(from_cel(k)): from_cel(v) for k, v in value.items()}
    if isinstance(value, celtypes.ListType | list | tuple):
        return [from_cel(v) for v in value]
    if isinstance(value, int):
        return int(value)
    return str(value)


def _eval_message(error: CELEvalError) -> str:
    args = error.args
    if args and isinstance(args[0], str):
        return args[0]
    return str(error)


def _template_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _template_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _template_strings(v)


def _strip_expressions(value: Any) -> Any:
    if isinstance(value, str):
        return _TEMPLATE_RE.sub("", value)
    if isinstance(value, dict):
        return {k: _strip_expressions(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_expressions(v) for v in value]
    return value


def _names(ast: Any) -> tuple[set[str], set[str], bool]:
    """The root identifiers an expression reads, the step names after ``steps``, and whether it
    uses a comprehension macro (whose variables are its own)."""
    roots: set[str] = set()
    steps: set[str] = set()
    macros = False
    stack = [ast]
    while stack:
        node = stack.pop()
        if not isinstance(node, Tree):
            continue
        data = node.data
        if data == "ident" and node.children:
            roots.add(str(node.children[0]))
        elif data == "member_dot_arg" and len(node.children) > 1 and str(node.children[1]) in _MACROS:
            macros = True
        elif data in ("member_dot", "member_index") and _is_ident(node.children[0], "steps"):
            key = node.children[1]
            literal = str(key) if isinstance(key, Token) else _string_literal(key)
            if literal is not None:
                steps.add(literal)
        stack.extend(node.children)
    return roots, steps, macros


def _is_ident(node: Any, name: str) -> bool:
    # member -> primary -> ident NAME
    while isinstance(node, Tree) and node.data in ("member", "primary") and len(node.children) == 1:
        node = node.children[0]
    return (
        isinstance(node, Tree)
        and node.data == "ident"
        and bool(node.children)
        and str(node.children[0]) == name
    )


def _string_literal(node: Any) -> str | None:
    while isinstance(node, Tree) and len(node.children) == 1:
        node = node.children[0]
    if isinstance(node, Tree) and node.data == "literal" and node.children:
        text = str(node.children[0])
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            return text[1:-1]
    elif isinstance(node, Token) and node.type in ("STRING_LIT", "string"):
        text = str(node)
        return text[1:-1]
    return None
