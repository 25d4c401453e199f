"""Storage elements on local disk, with Rucio's deterministic path convention."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from epic_wfms.errors import DataManagementError
from epic_wfms.model.naming import check_file_name


@dataclass(frozen=True)
class LocalRSE:
    name: str
    site: str
    rse_type: str  # DISK or TAPE
    root: Path
    deterministic: bool = True

    def path_for(self, scope: str, name: str) -> Path:
        """Rucio's default 'hash' lfn2pfn: <root>/<scope>/<md5[0:2]>/<md5[2:4]>/<name>.
        Scope and name must be single file names (never '..', '/...'), so the path stays
        under the RSE's root whatever a message named."""
        try:
            check_file_name(scope)
            check_file_name(name)
        except ValueError as error:
            raise DataManagementError(
                f"cannot place {scope[:40]}:{name[:120]} on {self.name}", str(error),
                "register files under names of the naming convention (docs/naming.md)",
            ) from None
        digest = hashlib.md5(f"{scope}:{name}".encode()).hexdigest()
        return self.root / scope / digest[0:2] / digest[2:4] / name

    def attributes(self) -> dict[str, str]:
        return {"rse": self.name, "site": self.site, "type": self.rse_type}


def lookup_rse(rses: dict[str, LocalRSE], name: str) -> LocalRSE:
    """The configured RSE of that name, or an error listing the configured ones."""
    try:
        return rses[name]
    except KeyError:
        raise DataManagementError(
            f"unknown RSE {name!r}", f"configured RSEs: {', '.join(rses)}",
            "add it to the rses section of the configuration",
        ) from None


def match_expression(expression: str, rses: list[LocalRSE]) -> list[LocalRSE]:
    """A subset of Rucio's RSE expressions: 'A|B' unions of RSE names or key=value attributes."""
    chosen: list[LocalRSE] = []
    for term in (t.strip() for t in expression.split("|")):
        if "=" in term:
            key, value = (p.strip() for p in term.split("=", 1))
            matches = [r for r in rses if r.attributes().get(key) == value]
        else:
            matches = [r for r in rses if r.name == term]
        if not matches:
            known = ", ".join(r.name for r in rses)
            raise ValueError(
                f"RSE expression term {term!r} matches no RSE (known RSEs: {known}; "
                "attributes: site=..., type=DISK|TAPE)"
            )
        chosen.extend(r for r in matches if r not in chosen)
    return chosen
