"""Turn pydantic validation errors into one readable, actionable message."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from epic_wfms.errors import InvalidRecordError

RecordT = TypeVar("RecordT", bound=BaseModel)


def describe_validation_error(error: ValidationError) -> str:
    """``field: problem`` for every failing field, joined on '; '."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "<record>"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_record(model: type[RecordT], data: Any) -> RecordT:
    """Validate ``data`` as ``model`` or raise InvalidRecordError saying which fields are wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidRecordError(
            f"invalid {model.__name__} record",
            describe_validation_error(error),
            f"correct the listed fields; see docs/model.md for the {model.__name__} fields",
        ) from error
