"""Serving the page: the routes the page's JavaScript calls (/internal/*), one login for every route, the theme,
and the --share tunnel.

Authentication (--gradio-auth, --gradio-auth-path): one ASGI middleware (UiAuthMiddleware, installed by
install_auth() in webui.create_app) sits in front of the whole app. A request — HTTP or websocket — to any path
other than /sdapi/* (which the API's middleware guards with --api-auth, or these same credentials) and the login
page's own files (PUBLIC_PATHS, PUBLIC_PREFIXES) needs Gradio's login cookie or HTTP Basic credentials of the same
users: Gradio's routes (/config, /gradio_api/* with the queue, uploads, files, heartbeat, streams), /internal/*,
the `file=` route, thumbnails, /docs, and extension routes added in on_app_started, whenever they are added.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from modules import credentials, progress, shared, token_counter
from modules.api.middleware import basic_auth_user

log = logging.getLogger(__name__)

BUILTIN_THEMES = ("base", "default", "glass", "monochrome", "soft", "origin", "citrus", "ocean")


def gradio_app_of(app: Any) -> Any:
    """The Gradio app mounted on `app` (the Mount whose app has Gradio's login `tokens`), or None."""
    for route in app.router.routes:
        if isinstance(route, Mount) and hasattr(route.app, "tokens"):
            return route.app
    return None


def gradio_cookie_user(gradio_app: Any, headers: Headers) -> str | None:
    """The user Gradio's login cookie belongs to, if it is a live login."""
    if gradio_app is None:
        return None
    cookies = {}
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            cookies[name] = value
    cookie_id = getattr(gradio_app, "cookie_id", "")
    for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
        token = cookies.get(name)
        if token and token in gradio_app.tokens:
            return gradio_app.tokens[token]
    return None


# What the login page itself needs before there is a login (relative to --subpath): the page, the login and
# logout routes, Gradio's login check, and static files. Everything else needs the login.
PUBLIC_PATHS = frozenset({"/", "/login", "/login/", "/logout", "/favicon.ico", "/theme.css", "/robots.txt",
                          "/manifest.json", "/pwa_icon", "/gradio_api/login_check", "/gradio_api/login_check/",
                          "/gradio_api/theme.css"})
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon/")


def relative_path(path: str, prefix: str = "") -> str | None:
    """`path` relative to --subpath ("/" for the page itself), or None when it is outside it."""
    prefix = prefix.rstrip("/")
    if not prefix:
        return path
    if path != prefix and not path.startswith(prefix + "/"):
        return None
    return path[len(prefix):] or "/"


def is_public(path: str, prefix: str = "") -> bool:
    path = relative_path(path, prefix)
    return path is not None and (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES))


class UiAuthMiddleware:
    """Every request but /sdapi (guarded by the API's middleware) and the login page's files needs a login when
    the UI has credentials: Gradio's cookie or HTTP Basic of the same users."""

    def __init__(self, app: ASGIApp, creds: dict[str, str], parent: Any, prefix: str = ""):
        self.app = app
        self.creds = creds
        self.parent = parent
        self.prefix = prefix
        self._gradio_app: Any = None

    @property
    def gradio_app(self) -> Any:
        """The mounted Gradio app, found once (it is mounted before the first request)."""
        if self._gradio_app is None:
            self._gradio_app = gradio_app_of(self.parent)
        return self._gradio_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.creds or scope["path"].startswith("/sdapi/"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        logged_in = bool(basic_auth_user(headers, self.creds) or gradio_cookie_user(self.gradio_app, headers))
        if is_public(scope["path"], self.prefix):
            page = relative_path(scope["path"], self.prefix) == "/"
            await self.app(scope, receive, send if logged_in or not page else without_api_info(send))
        elif logged_in:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before accept: the client gets HTTP 403
        else:
            # Gradio's own 401 body: its page shows the login form with the message. No WWW-Authenticate header,
            # which would make the browser ask with its own dialog instead.
            gradio_app = self.gradio_app
            message = getattr(gradio_app.get_blocks(), "auth_message", None) if gradio_app is not None else None
            response = JSONResponse({"detail": {"error": "Not authenticated", "auth_message": message}},
                                    status_code=401)
            await response(scope, receive, send)


_API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.DOTALL)


def without_api_info(send: Send) -> Send:
    """Gradio's login page embeds the app's whole API description (every endpoint and its parameters) even for a
    visitor who is not logged in: drop it from the page (the login form does not use it)."""
    start: dict[str, Any] = {}
    body = bytearray()

    async def send_page(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        body.extend(message.get("body", b""))
        if message.get("more_body"):
            return
        page = _API_INFO.sub(b"window.gradio_api_info = null;</script>", bytes(body))
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(page)).encode())]})
        await send({"type": "http.response.body", "body": page})

    return send_page


def gradio_auth(creds: dict[str, str]):
    """Gradio's auth callback over the same credentials (compared in constant time), or None without any."""
    if not creds:
        return None
    return lambda username, password: credentials.check_credentials(creds, username, password)


def install_auth(app: Any, creds: dict[str, str], prefix: str = "") -> None:
    """One login for every route of `app` (see the module's docstring); `prefix` is --subpath."""
    if creds:
        app.add_middleware(UiAuthMiddleware, creds=creds, parent=app, prefix=prefix)


def add_routes(app: Any, prefix: str = "") -> None:
    """The page's JSON routes (A1111's paths): progress of a task, queued tasks, token counts, quicksettings."""
    from fastapi import Body

    prefix = prefix.rstrip("/")

    def progress_route(req: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return progress.progress(str(req.get("id_task") or ""), int(req.get("id_live_preview", -1)),
                                 bool(req.get("live_preview", True)))

    def pending_tasks() -> dict[str, Any]:
        return progress.pending()

    def token_count(req: dict[str, Any] = Body(...)) -> dict[str, Any]:
        try:
            tokens, limit = token_counter.count_tokens(str(req.get("text") or ""), int(req.get("steps") or 1),
                                                       [str(s) for s in req.get("styles") or []],
                                                       is_positive=bool(req.get("is_positive", True)))
        except Exception as e:  # a counter must never break typing
            log.debug("Token count failed: %s", e)
            return {"tokens": None, "limit": None}
        return {"tokens": tokens, "limit": limit}

    def quicksettings_hint() -> list[dict[str, str]]:
        return [{"name": key, "label": info.label} for key, info in shared.opts.data_labels.items()]

    app.add_api_route(f"{prefix}/internal/progress", progress_route, methods=["POST"], include_in_schema=False)
    app.add_api_route(f"{prefix}/internal/pending-tasks", pending_tasks, methods=["GET"], include_in_schema=False)
    app.add_api_route(f"{prefix}/internal/token-count", token_count, methods=["POST"], include_in_schema=False)
    app.add_api_route(f"{prefix}/internal/quicksettings-hint", quicksettings_hint, methods=["GET"],
                      include_in_schema=False)


def theme() -> Any:
    """The gradio_theme setting as a theme object: Gradio's built-in themes only (nothing is fetched)."""
    import gradio as gr

    name = (shared.opts.gradio_theme or "Default").strip()
    if name.lower() in BUILTIN_THEMES:
        return getattr(gr.themes, name.capitalize())()
    log.warning("Theme %r is not one of Gradio's built-in themes (%s); using Default.", name,
                ", ".join(BUILTIN_THEMES))
    return gr.themes.Default()


def theme_head(name: str | None) -> str:
    """--theme dark|light: Gradio takes the mode from ?__theme=; add it to the address once."""
    if name not in ("dark", "light"):
        return ""
    return ("<script>(function(){const u=new URL(window.location.href);if(!u.searchParams.has('__theme')){"
            f"u.searchParams.set('__theme','{name}');window.location.replace(u.href);}}}})();</script>")


def start_share_tunnel(host: str, port: int) -> str | None:
    """A public gradio.live link to the local server (Gradio's tunnel client); None with a warning when it cannot
    be made (offline, blocked download): the server keeps serving locally."""
    from gradio import networking

    try:
        url = networking.setup_tunnel(local_host="127.0.0.1" if host == "0.0.0.0" else host, local_port=port,
                                      share_token=secrets.token_urlsafe(32), share_server_address=None,
                                      share_server_tls_certificate=None)
    except Exception as e:
        log.warning("Could not create a share link (%s: %s); the UI is still available locally.", type(e).__name__, e)
        return None
    log.info("Running on public URL: %s", url)
    print(f"Running on public URL: {url}", flush=True)
    return url
