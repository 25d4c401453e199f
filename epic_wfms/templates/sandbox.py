"""The Jinja2 environments templates are evaluated in: sandboxed, immutable and bounded.

Template text and parameter values come from users. They are evaluated in Jinja2's
``ImmutableSandboxedEnvironment`` (no access to Python internals such as ``__globals__``, no
changes to data), with:

- expressions only: ``{% ... %}`` statements (loops, macros, imports) are refused when the
  template is compiled, so evaluating one expression does a bounded amount of work;
- bounded sizes: ``range`` at most ``MAX_ITEMS`` numbers; ``*``, ``**``, ``+``, ``%``, filters
  and method calls refuse results beyond ``MAX_TEXT`` characters or items (and arguments that
  would need more work than ``MAX_COST`` to produce them); integers of ``MAX_INT_BITS``;
- the globals ``range`` and ``dict`` only; the filters ``shell_plain``/``shell_single``/
  ``shell_double`` quote values in commands (``commands.py``).
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Sized
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.nativetypes import NativeCodeGenerator, native_concat
from jinja2.sandbox import ImmutableSandboxedEnvironment

from epic_wfms.templates import commands

MAX_ITEMS = 10_000
MAX_TEXT = 100_000
MAX_COST = 1_000_000
MAX_INT_BITS = 4_096
_FORMAT_WIDTH = re.compile(r"(\d+|\*)")
_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "*": operator.mul, "**": operator.pow, "%": operator.mod,
    "//": operator.floordiv, "/": operator.truediv, "-": operator.sub}


def bounded_range(*args: int) -> range:
    """``range`` of at most ``MAX_ITEMS`` numbers."""
    numbers = range(*args)
    if len(numbers) > MAX_ITEMS:
        raise SecurityError(f"range({', '.join(map(str, args))}) has {len(numbers)} numbers; "
                            f"templates may make at most {MAX_ITEMS}")
    return numbers


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict) else 0


def check_result(value: Any) -> Any:
    """Refuse a value larger than ``MAX_TEXT`` characters/items or ``MAX_INT_BITS`` bits."""
    if _size(value) > MAX_TEXT:
        raise SecurityError(f"a template value of {_size(value)} characters or items; "
                            f"the limit is {MAX_TEXT}")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise SecurityError(f"a template integer of {value.bit_length()} bits; the limit is "
                            f"{MAX_INT_BITS}")
    return value


def check_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse arguments whose product of sizes and numbers (an upper bound of the work a
    filter or method such as ``center``, ``replace`` or ``join`` does) exceeds ``MAX_COST``."""
    cost = 1
    for value in (*args, *kwargs.values()):
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            cost *= max(1, abs(value))
        elif size := _size(value):
            cost *= size
        if cost > MAX_COST:
            raise SecurityError(f"a filter or method call whose arguments could make a value "
                                f"beyond the template limit ({MAX_TEXT} characters)")


def _check_format_widths(text: str) -> None:
    """A width or precision in a format string (``%9999d``, ``{:>9999}``) is bounded too."""
    for spec in re.findall(r"%[#0\- +]*[\d*.]+|\{[^{}]*:[^{}]*\}", text):
        for number in _FORMAT_WIDTH.findall(spec):
            if number == "*" or int(number) > MAX_TEXT:
                raise SecurityError(f"format width {spec[:40]!r} is beyond the template limit "
                                    f"({MAX_TEXT})")


def _bounded_filter(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)  # keeps jinja_pass_arg (pass_context, pass_environment)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        data = tuple(a for a in args if isinstance(a, Sized | int))
        check_arguments(data, kwargs)
        if function.__name__ == "do_format" and data and isinstance(data[0], str):
            _check_format_widths(data[0])
        return check_result(function(*args, **kwargs))

    return bounded


class TemplateSandbox(ImmutableSandboxedEnvironment):
    """Text rendering of template strings (see the module docstring)."""

    intercepted_binops = frozenset(_BINOPS)

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False)
        self.filters = {name: _bounded_filter(f) for name, f in
                        {**self.filters, **commands.FILTERS}.items()}
        self.globals = {"range": bounded_range, "dict": dict}

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "*" and (_size(left) or _size(right)):
            count = right if _size(left) else left
            if isinstance(count, int) and max(_size(left), _size(right)) * count > MAX_TEXT:
                raise SecurityError(f"repeating a value {count} times is beyond the template "
                                    f"limit ({MAX_TEXT} characters or items)")
        if (operator_ == "**" and isinstance(left, int) and isinstance(right, int)
                and right > 0 and max(left.bit_length(), 1) * right > MAX_INT_BITS):
            raise SecurityError(f"{left} ** {right} is beyond the template limit "
                                    f"({MAX_INT_BITS}-bit integers)")
        if operator_ == "+" and _size(left) + _size(right) > MAX_TEXT:
            raise SecurityError(f"a sum beyond the template limit ({MAX_TEXT} characters)")
        if operator_ == "%" and isinstance(left, str):
            _check_format_widths(left)
        return check_result(_BINOPS[operator_](left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        check_arguments(args, kwargs)
        if (isinstance(getattr(__obj, "__self__", None), str)
                and getattr(__obj, "__name__", "") in ("format", "format_map")):
            _check_format_widths(__obj.__self__)
        return check_result(super().call(__context, __obj, *args, **kwargs))


class NativeTemplateSandbox(TemplateSandbox):
    """A string that is one ``{{ expression }}`` keeps the expression's native type."""

    code_generator_class = NativeCodeGenerator
    concat = staticmethod(native_concat)


def refuse_statements(environment: TemplateSandbox, source: str) -> None:
    """Template strings are expressions: ``{% %}`` statements are refused (SecurityError)."""
    tree = environment.parse(source)
    for node in tree.find_all(nodes.Stmt):
        if not isinstance(node, nodes.Output):
            raise SecurityError(f"'{{% {type(node).__name__.lower()} %}}' statements are not "
                                "allowed in templates; write expressions ({{ name }}, filters) "
                                "and use the step's foreach: for repetition")
