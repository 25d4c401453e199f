"""Payload commands are argument lists, never shell text.

A command of a template (``payload.command``, ``validate``, ``loop.check``) is split into
words when the template is compiled, as a POSIX shell splits it (quotes group a word), and
every ``{{ expression }}`` is evaluated inside its own word. Whatever a parameter value
holds (quotes, ``;``, ``$(...)``, spaces) it stays one argument. The rendered command is its
words joined with shell quoting (``shlex.join``): PanDA's pilot, which runs ``--exec`` with a
shell, and the local runner, which splits it back (``shlex.split``) and runs it without a
shell, see the same words. Unquoted shell operators (``;``, ``&&``, ``|``, ``>``, ``$(``) are
refused when the template is compiled: there is no shell to run them.
"""

from __future__ import annotations

import re
import shlex

from epic_wfms.templates.errors import TemplateError

COMMAND_FIELDS = (("payload", "command"), ("validate",), ("loop", "check"))
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_HIDDEN = re.compile("\ue000(\\d+)\ue001")
_OPERATOR_CHARS = set("();<>|&")


def split_words(source: str, where: str) -> list[str]:
    """The words of a command template, each ``{{ }}`` kept whole inside its word."""
    expressions: list[str] = []

    def hide(match: re.Match[str]) -> str:
        expressions.append(match.group(0))
        return f"\ue000{len(expressions) - 1}\ue001"

    lexer = shlex.shlex(_JINJA.sub(hide, source), posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, ""
    try:
        words = list(lexer)
    except ValueError as error:
        raise TemplateError(f"{where}: cannot split the command {source!r} into words",
                            str(error), "close the quote") from None
    for word in words:
        if word and set(word) <= _OPERATOR_CHARS:
            raise TemplateError(
                f"{where}: the command {source!r} uses the shell operator {word!r}",
                "commands run without a shell: their words are the payload's arguments",
                "quote it if it is an argument (e.g. 'q2>10'); put pipelines and "
                "redirections in a payload script")
    return [_HIDDEN.sub(lambda m: expressions[int(m.group(1))], word) for word in words]


def join_words(words: list[str]) -> str:
    """The command line for ``words``: a shell splits it back into exactly these words."""
    return shlex.join(words)


def command_words(command: str) -> list[str]:
    """The arguments of a rendered command (what the local runner executes)."""
    return shlex.split(command)
