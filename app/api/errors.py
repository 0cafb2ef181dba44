"""Error responses that tell the client the whole truth.

Starlette answers 405 with the methods of the first route whose path matched, so a path served by two
routes (`POST` and `DELETE /inspection/roi`) would advertise only one of them in `Allow`. The methods are
taken from the OpenAPI schema, the same list clients read.
"""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _methods_by_path(app: FastAPI) -> list[tuple[re.Pattern[str], set[str]]]:
    table = getattr(app.state, "allowed_methods", None)
    if table is None:
        table = []
        for template, operations in app.openapi().get("paths", {}).items():
            pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
            table.append((pattern, {m.upper() for m in operations if m in _HTTP_METHODS}))
        app.state.allowed_methods = table
    return table


async def complete_allow_header(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 405:
        methods: set[str] = set()
        for pattern, allowed in _methods_by_path(request.app):
            if pattern.match(request.url.path):
                methods |= allowed
        if methods:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(methods))}
    return await http_exception_handler(request, exc)
