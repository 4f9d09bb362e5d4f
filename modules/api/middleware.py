"""What wraps every request: X-Process-Time, HTTP Basic auth on /sdapi/ (on every route of an API-only server),
--api-log lines, CORS, and A1111's JSON error shape ``{error, detail, body, errors}``."""

from __future__ import annotations

import base64
import binascii
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modules import credentials
from modules.errors import UserError

log = logging.getLogger(__name__)

PROTECTED_PREFIXES = ("/sdapi/",)


def error_body(error: str, detail: Any, errors: str) -> dict[str, Any]:
    return {"error": error, "detail": detail, "body": "", "errors": errors}


def basic_auth_user(headers: Headers, creds: dict[str, str]) -> str | None:
    """The user name of a valid ``Authorization: Basic`` header, else None."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep or not credentials.check_credentials(creds, user, password):
        return None
    return user


class ApiMiddleware:
    """Pure ASGI (streaming responses such as the UI's event streams pass through untouched)."""

    def __init__(self, app: ASGIApp, creds: dict[str, str] | None = None, log_requests: bool = False,
                 protect_all: bool = False):
        self.app = app
        self.creds = creds or {}
        self.log_requests = log_requests
        # Without a UI nothing else guards /internal, /docs or extension routes: the API's credentials cover them.
        self.protect_all = protect_all

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.creds and self.protect_all:
            if basic_auth_user(Headers(scope=scope), self.creds) is None:
                await send({"type": "websocket.close", "code": 1008})
                return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_with_time(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Process-Time", f"{time.perf_counter() - start:.4f}")
            await send(message)

        path: str = scope["path"]
        if (
            self.creds
            and (self.protect_all or path.startswith(PROTECTED_PREFIXES))
            and basic_auth_user(Headers(scope=scope), self.creds) is None
        ):
            detail = "Incorrect username or password"
            response = JSONResponse(
                error_body("HTTPException", detail, f"401: {detail}"),
                status_code=401,
                headers={"WWW-Authenticate": "Basic"},
            )
            await response(scope, receive, send_with_time)
        else:
            try:
                await self.app(scope, receive, send_with_time)
            except Exception as e:
                # Unexpected errors are answered here, not by Starlette's outer handler, so they keep the header.
                if status:
                    raise
                log.error("API error: %s %s", scope["method"], path, exc_info=e)
                response = JSONResponse(error_body(type(e).__name__, str(e), str(e)), status_code=500)
                await response(scope, receive, send_with_time)

        if self.log_requests and path.startswith("/sdapi/"):
            client = scope.get("client") or ("-", 0)
            log.info(
                "API %s %s %s/%s %s %s %s:%s %.4fs",
                time.strftime("%Y-%m-%d %H:%M:%S"),
                status,
                scope.get("scheme", "http"),
                scope.get("http_version", "1.1"),
                scope["method"],
                path,
                client[0],
                client[1],
                time.perf_counter() - start,
            )


def _user_error(request: Request, e: UserError) -> JSONResponse:
    return JSONResponse(error_body(type(e).__name__, str(e), str(e)), status_code=e.status_code)


def _http_error(request: Request, e: HTTPException) -> JSONResponse:
    return JSONResponse(
        error_body("HTTPException", e.detail, f"{e.status_code}: {e.detail}"),
        status_code=e.status_code,
        headers=e.headers,
    )


def install(app: FastAPI, creds: dict[str, str], log_requests: bool, protect_all: bool = False) -> None:
    """Error shape and the request middleware on `app` (call before the UI is mounted); `protect_all` (an API-only
    server) puts every route, not only /sdapi/, behind `creds`."""
    app.add_exception_handler(UserError, _user_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_middleware(ApiMiddleware, creds=creds, log_requests=log_requests, protect_all=protect_all)


def setup_cors(app: FastAPI, cmd_opts: Any) -> None:
    """--cors-allow-origins / --cors-allow-origins-regex; nothing cross-origin is allowed without them. Added last,
    so it runs first and answers preflight requests before authentication."""
    if not (cmd_opts.cors_allow_origins or cmd_opts.cors_allow_origins_regex):
        return
    from fastapi.middleware.cors import CORSMiddleware

    origins = [o.strip() for o in (cmd_opts.cors_allow_origins or "").split(",") if o.strip()]
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_origin_regex=cmd_opts.cors_allow_origins_regex,
        allow_methods=["*"],
        allow_credentials=True,
        allow_headers=["*"],
    )
