"""Workflows written elsewhere -> epic-wfms templates: PanDA's pchain CWL subset
(``targets/cwl.py``) and Snakefiles (``snakemake.py``, read by Snakemake itself)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from epic_wfms.templates.errors import TemplateError

_UNSAFE = re.compile(r"[^a-z0-9_]+")


def safe_name(text: str, what: str) -> str:
    """A template, step, parameter or datatype name (``[a-z][a-z0-9_]*``) for ``text``."""
    name = _UNSAFE.sub("_", str(text).lower()).strip("_")
    if not name:
        raise TemplateError(f"cannot name a {what} after {text!r}",
                            "names are lower-case letters, digits and _", "rename it")
    return name if name[0].isalpha() else f"x{name}"


def workflow_language(path: Path) -> str:
    """``cwl`` or ``snakemake``, from the file's name and, for YAML, its ``class``."""
    name = path.name.lower()
    if name == "snakefile" or name.endswith((".smk", ".snakefile")):
        return "snakemake"
    if name.endswith(".cwl"):
        return "cwl"
    if name.endswith((".yaml", ".yml")):
        try:
            document = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            document = None
        if isinstance(document, dict) and document.get("class") == "Workflow":
            return "cwl"
    raise TemplateError(f"cannot tell the workflow language of {path.name}",
                        "import reads CWL (*.cwl, or YAML with class: Workflow) and "
                        "Snakemake (Snakefile, *.smk)", "name the file accordingly")


def import_workflow(path: Path, name: str | None = None, configfile: Path | None = None,
                    cwl_inputs: Path | None = None) -> tuple[str, dict[str, Any]]:
    """(language, template mapping) for a CWL workflow or a Snakefile."""
    path = Path(path)
    if not path.is_file():
        raise TemplateError(f"workflow file {path} does not exist", "",
                            "give the path of a .cwl file or a Snakefile")
    language = workflow_language(path)
    if language == "cwl":
        from epic_wfms.templates.targets.cwl import import_cwl

        if configfile is not None:
            raise TemplateError("--configfile is for Snakefiles", "a CWL workflow has inputs",
                                "give the CWL inputs with --cwl-inputs FILE")
        values = None
        if cwl_inputs is not None:
            values = yaml.safe_load(Path(cwl_inputs).read_text())
            if not isinstance(values, dict):
                raise TemplateError(f"{cwl_inputs} is not a mapping of CWL inputs",
                                    "pchain's --yaml file maps input names to values",
                                    "write NAME: VALUE lines")
        return language, import_cwl(path.read_text(), name=safe_name(name or path.stem, "template"),
                                    input_values=values)
    if cwl_inputs is not None:
        raise TemplateError("--cwl-inputs is for CWL workflows", "a Snakefile has a config",
                            "give the Snakemake config with --configfile FILE")
    from epic_wfms.templates.importers.snakemake import import_snakefile

    return language, import_snakefile(path, name=name, configfile=configfile)

