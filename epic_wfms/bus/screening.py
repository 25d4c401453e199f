"""What a wire body must respect before it is parsed into models.

Anyone who can publish on the broker can send any bytes. Before a body reaches the message
models it is held to limits that make parsing itself safe: bounded size, UTF-8, JSON without
``NaN``/``Infinity``, bounded nesting and element count, and text that PostgreSQL can store
(no NUL character, no unpaired surrogate). A body outside them is malformed: dead-lettered
on its own, the rest of its batch goes on.
"""

from __future__ import annotations

import json
from typing import Any

from epic_wfms.errors import MalformedMessageError

MAX_BODY_CHARS = 1_000_000  # an STF announcement is ~1 kB; a slice result with events ~100 kB
MAX_DEPTH = 16  # the deepest message (a slice result's events) nests 5 levels
MAX_ELEMENTS = 100_000

FIX = "fix the producer to follow docs/messages.md; the message is dead-lettered"


def malformed(what: str, why: str) -> MalformedMessageError:
    return MalformedMessageError(what, why, FIX)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_body(raw: str | bytes) -> dict[str, Any]:
    """The JSON object of a wire body, or MalformedMessageError saying which limit it breaks."""
    if isinstance(raw, bytes | bytearray):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as error:
            raise malformed("message is not UTF-8 text", str(error)) from None
    if not isinstance(raw, str):
        raise malformed("message is not text", f"got {type(raw).__name__}")
    if len(raw) > MAX_BODY_CHARS:
        raise malformed(f"message of {len(raw)} characters is too large",
                        f"the limit is {MAX_BODY_CHARS}")
    try:
        data = json.loads(raw, parse_constant=_no_constants)
    except RecursionError:
        raise malformed("message is not valid JSON", "it nests too deeply to parse") from None
    except ValueError as error:  # JSONDecodeError, NaN/Infinity, integers of >4300 digits
        raise malformed("message is not valid JSON", str(error)[:300]) from None
    if not isinstance(data, dict):
        raise malformed("message is not a JSON object", f"got {type(data).__name__}")
    check_structure(data)
    return data


def check_structure(data: Any) -> None:
    """Nesting depth, element count and NUL-free text, without recursion."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    seen = 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_ELEMENTS:
            raise malformed("message has too many elements", f"the limit is {MAX_ELEMENTS}")
        if isinstance(value, str):
            _check_text(value)
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise malformed("message nests too deeply", f"the limit is {MAX_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((key, depth) for key in value)
            stack.extend((item, depth + 1) for item in value.values())
        else:
            stack.extend((item, depth + 1) for item in value)


def _check_text(value: str) -> None:
    if "\x00" in value:
        raise malformed("message text holds a NUL character", "text must not contain U+0000")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise malformed("message text holds an unpaired surrogate",
                        "text must be valid Unicode (\\ud800-\\udfff only in pairs)") from None
