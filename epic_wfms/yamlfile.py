"""Reading the YAML files users give us (configuration, templates, site files).

Every way such a file can be unusable becomes one what/why/fix error of the caller's kind,
never a traceback: missing, a directory, unreadable, not UTF-8, not YAML, not a mapping, or a
document whose aliases expand beyond ``MAX_NODES`` values (a "billion laughs" file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from epic_wfms.errors import EpicWfmsError

MAX_NODES = 1_000_000


def read_yaml_mapping(path: Path, error: type[EpicWfmsError], what: str, fix: str
                      ) -> dict[str, Any]:
    """The file's top-level mapping (an empty file is ``{}``), or ``error(what, why, fix)``."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise error(f"cannot read {what} {path}: it does not exist", "", fix) from None
    except IsADirectoryError:
        raise error(f"cannot read {what} {path}: it is a directory", "a file is expected",
                    fix) from None
    except OSError as problem:
        raise error(f"cannot read {what} {path}", problem.strerror or str(problem), fix) from None
    except UnicodeDecodeError as problem:
        raise error(f"cannot read {what} {path}: it is not UTF-8 text",
                    f"byte {problem.start}: {problem.reason}", "save the file as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as problem:
        raise error(f"cannot read {what} {path}: it is not valid YAML", str(problem),
                    "fix the YAML syntax at the line shown") from None
    except RecursionError:
        raise error(f"cannot read {what} {path}: it nests too deeply", "", fix) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{what} {path} is not a YAML mapping",
                    f"its top level is a {type(data).__name__}", fix)
    if (count := _expanded_size(data)) > MAX_NODES:
        raise error(f"{what} {path} expands to {count} values",
                    f"its aliases (*name) repeat content beyond the limit of {MAX_NODES}",
                    "write the content out instead of nesting aliases")
    return data


def _expanded_size(data: Any) -> int:
    """Values the document holds once aliases are expanded (shared objects counted per use;
    a recursive one counts as too many), in time proportional to the distinct objects."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        value, children_done = stack.pop()
        children = (list(value.values()) if isinstance(value, dict) else
                    list(value) if isinstance(value, list) else [])
        if children_done:
            open_.discard(id(value))
            sizes[id(value)] = 1 + sum(sizes.get(id(c), 1) for c in children)
            if sizes[id(value)] > MAX_NODES:
                return sizes[id(value)]
            continue
        if id(value) in open_:
            return MAX_NODES + 1  # it contains itself
        if id(value) in sizes:
            continue
        open_.add(id(value))
        stack.append((value, True))
        stack.extend((c, False) for c in children if isinstance(c, dict | list))
    return sizes.get(id(data), 1)
