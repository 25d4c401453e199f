"""Payload commands: the template author's shell text, every value in it shell-quoted.

A command of a template (``payload.command``, ``validate``, ``loop.check``) is shell text
written by the template's author: pipes, redirections and ``&&`` are theirs to use (Snakemake
rules are imported as such). What goes into it from outside — every ``{{ expression }}``
(parameters, tags, items) and the runner's ``%IN``/``%OUT`` file lists — is quoted for the
place it lands in, found by reading the command as a POSIX shell does:

- outside quotes: ``shlex.quote`` (a list gives one quoted word per element);
- inside ``'...'``: each ``'`` becomes ``'"'"'`` (close, a quoted quote, reopen);
- inside ``"..."``: ``\\``, ``"``, ``$`` and a backtick get a backslash.

So a parameter holding ``'; rm -rf ~ #`` or ``$(...)`` is data wherever the author put it.
PanDA's pilot and the local runner run the same text with ``sh -c``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from epic_wfms.templates.errors import TemplateError

COMMAND_FIELDS = (("payload", "command"), ("validate",), ("loop", "check"))
PLAIN, SINGLE, DOUBLE = "plain", "single", "double"


def quote_plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(shlex.quote(str(item)) for item in value)
    return shlex.quote(str(value))


def quote_single(value: Any) -> str:
    return str(value).replace("'", "'\"'\"'")


def quote_double(value: Any) -> str:
    return re.sub(r'([\\"$`])', r"\\\1", str(value))


QUOTERS: dict[str, Callable[[Any], str]] = {PLAIN: quote_plain, SINGLE: quote_single,
                                            DOUBLE: quote_double}
FILTERS = {f"shell_{place}": quoter for place, quoter in QUOTERS.items()}  # for the sandbox


_BLOCK = re.compile(r"(\{%-?\s*raw\s*-?%\}(.*?)\{%-?\s*endraw\s*-?%\})|(\{\{.*?\}\})"
                    r"|\{#.*?#\}|\{%.*?%\}", re.DOTALL)
_OUTPUT = re.compile(r"^\{\{([-+]?)(.*?)([-+]?)\}\}$", re.DOTALL)


def _advance(state: str, text: str, before_value: bool = False) -> str:
    """The shell's quoting state after reading ``text`` from ``state``. Before a value, a
    dangling backslash is refused: it would escape the value's own quoting."""
    i = 0
    while i < len(text):
        char = text[i]
        if state == SINGLE:
            state = PLAIN if char == "'" else SINGLE
        elif char == "\\":
            i += 2  # an escaped character, outside quotes or inside "..."
            continue
        elif state == PLAIN:
            state = {"'": SINGLE, '"': DOUBLE}.get(char, PLAIN)
        elif char == '"':
            state = PLAIN
        i += 1
    if before_value and i > len(text):
        raise TemplateError(f"a backslash right before a value: {text[-40:]!r}",
                            "it would escape the quoting that keeps the value data",
                            "remove the backslash (values are quoted for their place)")
    return state


def guard(source: str, where: str) -> str:
    """The command template with each ``{{ expression }}`` piped through the shell quoting
    of its place (``shell_plain``, ``shell_single`` or ``shell_double``); ``{% raw %}``
    blocks are shell text."""
    out, state, last = [], PLAIN, 0
    for match in _BLOCK.finditer(source):
        state = _advance(state, source[last:match.start()], match.group(3) is not None)
        raw, raw_text, expression = match.group(1), match.group(2), match.group(3)
        if raw is not None:
            state = _advance(state, raw_text)
        if expression is not None:
            output = _OUTPUT.match(expression)
            out += [source[last:match.start()],
                    f"{{{{{output[1]} ({output[2]}) | shell_{state} {output[3]}}}}}"]
        else:
            out += [source[last:match.start()], match.group(0)]
        last = match.end()
    if _advance(state, source[last:]) != PLAIN:
        raise TemplateError(f"{where}: the command {source!r} cannot be read as shell text",
                            f"a {_advance(state, source[last:])} quote is not closed",
                            "close the quote")
    return "".join([*out, source[last:]])


def substitute(command: str, values: Mapping[str, str]) -> str:
    """Replace placeholders (``%IN``, ``%IN2``, ``%OUT``, ...) by their values, quoted for
    their place in the command; longer names first (``%IN10`` before ``%IN1``)."""
    if not values:
        return command
    pattern = re.compile("|".join(re.escape(k) + r"\b" for k in sorted(values, key=len,
                                                                        reverse=True)))
    out, state, last = [], PLAIN, 0
    for match in pattern.finditer(command):
        state = _advance(state, command[last:match.start()], before_value=True)
        out += [command[last:match.start()], QUOTERS[state](values[match.group(0)])]
        last = match.end()
    return "".join([*out, command[last:]])
