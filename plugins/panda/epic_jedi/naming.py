"""ePIC's DDM naming as JEDI sees it: Rucio ``scope:name`` DIDs (``epic:swf.<run>.E1_BNL``)."""

from __future__ import annotations

DEFAULT_SCOPE = "epic"


def rucio_scope(did: str) -> str:
    """The Rucio scope of a dataset name: the part before ``:``, else ePIC's default scope."""
    return did.split(":", 1)[0] if ":" in did else DEFAULT_SCOPE


def rucio_name(did: str) -> str:
    return did.split(":", 1)[1] if ":" in did else did
