"""Run a job in panda-client's ``prun`` format at a site whose transformation runs its
arguments as the command (ePIC's ``wfms.panda.transformation``).

A template rendered for PanDA (``template render --target panda``) is a task exactly as
``prun`` builds it; its jobs' parameters are what PanDA's generic transformation (runGen)
reads::

    -j "" --sourceURL URL -r . -a None -o "{'calib.json': 'LFN'}" -i "['in1', 'in2']"
    -p "URL-quoted command" [--inMap "{'IN': [...], 'IN2': [...]}"]

Where the site runs ePIC's transformation instead, the installation puts this module in
front of those parameters (``taskparams.complete_for_site``); it does what the job needs
of runGen here: the command's ``%IN`` (``%IN2``, ... for secondary streams) become the
comma-separated input files, the command runs with ``sh -c`` in the job's directory
(where the pilot put the inputs), and each output the command wrote is renamed to the
file name PanDA expects (``-o``). The template library's ``payloads/`` (the shipped one,
installed with epic-wfms on the worker) is linked into the directory when the command
names it. The exit code is the command's.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

from epic_wfms.wfms.payloads.results import EXIT_BAD_INPUT

PAYLOADS = Path(__file__).resolve().parents[2] / "templates" / "library" / "payloads"


def _literal(text: str | None, what: str) -> object:
    if not text:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if what == "inputs":  # a comma-separated list (JEDI's ${IN} without /T)
            return [name for name in text.split(",") if name]
        raise


def _names(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [name for name in value.split(",") if name]
    return [str(name) for name in value]  # type: ignore[union-attr]


def command_line(command: str, streams: dict[str, list[str]]) -> str:
    """``command`` with ``%IN`` / ``%IN2``... replaced by the streams' files, comma-joined
    (longer names first, so ``%IN2`` is not read as ``%IN`` followed by 2)."""
    if not streams:
        return command
    pattern = re.compile("|".join(re.escape(f"%{k}") + r"\b"
                                  for k in sorted(streams, key=len, reverse=True)))
    return pattern.sub(lambda m: ",".join(streams[m.group(0)[1:]]), command)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-p", dest="command", required=True, help="URL-quoted command")
    parser.add_argument("-o", dest="outputs", default=None, help="{file: LFN}")
    parser.add_argument("-i", dest="inputs", default=None, help="the primary input files")
    parser.add_argument("--inMap", dest="in_map", default=None, help="{stream: files}")
    for ignored in ("-j", "--sourceURL", "-r", "-a"):  # runGen's sandbox and directories
        parser.add_argument(ignored, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        outputs = _literal(args.outputs, "outputs") or {}
        streams = {"IN": _names(_literal(args.inputs, "inputs"))}
        in_map = _literal(args.in_map, "in_map") or {}
    except (ValueError, SyntaxError) as error:
        print(f"prun job parameters are not readable: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    streams.update({str(k): _names(v) for k, v in dict(in_map).items()})
    command = command_line(unquote(args.command), streams)
    if "payloads/" in command and not Path("payloads").exists() and PAYLOADS.is_dir():
        Path("payloads").symlink_to(PAYLOADS, target_is_directory=True)
    print(f"prun job: {command}", flush=True)
    code = subprocess.run(["sh", "-c", command], env=os.environ).returncode
    if code:
        return code
    for produced, lfn in dict(outputs).items():
        if not Path(produced).exists():
            print(f"the command wrote no {produced} (the task's output {lfn})",
                  file=sys.stderr)
            return EXIT_BAD_INPUT
        Path(produced).rename(lfn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
