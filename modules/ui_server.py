"""Serving the page: the routes the page's JavaScript calls (/internal/*), one login for every route, the theme,
and the --share tunnel.

Authentication (--gradio-auth, --gradio-auth-path): Gradio's login page and cookie protect Gradio's own routes.
Every other route of the app that is not under /sdapi (which the API's middleware guards with --api-auth, or
these same credentials) — /internal/*, the `file=` route, thumbnails, extension routes added in on_app_started,
/docs — accepts a request only with Gradio's login cookie or HTTP Basic credentials of the same users.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import Match, Mount
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


class UiAuthMiddleware:
    """Requests to the app's own routes (not Gradio's, not /sdapi) need a login when the UI has credentials."""

    def __init__(self, app: ASGIApp, creds: dict[str, str], parent: Any):
        self.app = app
        self.creds = creds
        self.parent = parent

    def own_route(self, scope: Scope) -> bool:
        for route in self.parent.router.routes:
            if isinstance(route, Mount) and hasattr(route.app, "tokens"):
                continue
            match, _ = route.matches(scope)
            if match != Match.NONE:
                return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.creds or scope["path"].startswith("/sdapi/"):
            await self.app(scope, receive, send)
            return
        if self.own_route(scope):
            headers = Headers(scope=scope)
            user = basic_auth_user(headers, self.creds) or gradio_cookie_user(gradio_app_of(self.parent), headers)
            if user is None:
                response = JSONResponse({"detail": "Not authenticated"}, status_code=401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def gradio_auth(creds: dict[str, str]):
    """Gradio's auth callback over the same credentials (compared in constant time), or None without any."""
    if not creds:
        return None
    return lambda username, password: credentials.check_credentials(creds, username, password)


def install_auth(app: Any, creds: dict[str, str]) -> None:
    if creds:
        app.add_middleware(UiAuthMiddleware, creds=creds, parent=app)


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
