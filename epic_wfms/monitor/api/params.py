"""Query parameters shared by the routers, bounded so no input reaches the store unchecked."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

INT32 = 2**31 - 1
TEXT = r"^[^\x00]*$"  # no NUL: PostgreSQL text cannot hold one (the middleware refuses it too)
Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Offset = Annotated[int, Query(ge=0, le=INT32, description="rows to skip")]
Sort = Annotated[str | None, Query(max_length=40, pattern=TEXT,
                                   description="field or -field (descending)")]
RunNumber = Annotated[int | None, Query(ge=0, le=INT32, alias="run")]
RunPath = Annotated[int, Path(ge=0, le=INT32)]
JobPath = Annotated[int, Path(ge=0, le=INT32)]
Name = Annotated[str, Path(min_length=1, max_length=255, pattern=TEXT)]
Filter = Annotated[str | None, Query(max_length=40, pattern=TEXT)]
Hours = Annotated[int, Query(ge=1, le=24 * 366)]
