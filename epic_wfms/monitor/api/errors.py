"""The stable error object of the API: ``{"error": {status, code, what, why, fix}}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from epic_wfms.monitor.auth import AuthError
from epic_wfms.monitor.writes import WriteRefused


class ErrorBody(BaseModel):
    status: int
    code: str
    what: str
    why: str = ""
    fix: str = ""


class ErrorObject(BaseModel):
    error: ErrorBody


def error_response(status: int, code: str, what: str, why: str = "", fix: str = "",
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorObject(error=ErrorBody(status=status, code=code, what=what, why=why, fix=fix))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorObject, "description": text} for code, text in (
        (400, "bad parameter"), (401, "no or invalid token"), (403, "role not allowed"),
        (404, "not found"), (409, "conflicts with the current state"),
        (422, "invalid request"))
}


class NotFound(Exception):
    def __init__(self, what: str, fix: str) -> None:
        super().__init__(what)
        self.what, self.fix = what, fix


def install(app: FastAPI) -> None:
    @app.exception_handler(AuthError)
    async def _auth(_: Request, error: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return error_response(error.status, error.code, error.what, error.why, error.fix,
                              headers)

    @app.exception_handler(WriteRefused)
    async def _refused(_: Request, error: WriteRefused) -> JSONResponse:
        return error_response(error.status, error.code, error.what, error.why, error.fix)

    @app.exception_handler(NotFound)
    async def _missing(_: Request, error: NotFound) -> JSONResponse:
        return error_response(404, "not_found", error.what, "", error.fix)

    @app.exception_handler(ValueError)
    async def _bad(_: Request, error: ValueError) -> JSONResponse:
        return error_response(400, "bad_parameter", str(error), "",
                              "see the OpenAPI document at /api/v1/openapi.json")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        return error_response(422, "validation_error", "the request is invalid", problems,
                              "fix the listed parameters (see /api/v1/openapi.json)")

    @app.exception_handler(HTTPException)
    async def _http(_: Request, error: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return error_response(error.status_code, code, str(error.detail), "",
                              "see /api/v1/docs for the endpoints")
