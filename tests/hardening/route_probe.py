"""Build the app exactly as webui.py does (with the given flags, in this fresh process) and send every route it has
one request without credentials. Prints one JSON line per route: {path, method, status, location, body} (line by line,
so a route that ends the process, such as an open server-kill, still leaves what came before).

Usage: python -m tests.hardening.route_probe [webui flags...]   (SD_WEBUI_DATA_DIR names the data directory)
With PROBE_CREDENTIALS=user:password, it then prints {"cmd_flags": ...}: /sdapi/v1/cmd-flags read with them.

Routes are enumerated from the app's router, recursively through mounts, so a route added later is probed too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.argv = ["webui.py", *sys.argv[1:]]  # cmd_opts is parsed from sys.argv at import


def path_params(path: str) -> str:
    """A concrete request path for a route path: each {param} or {param:conv} becomes a harmless value."""
    out, i = [], 0
    while i < len(path):
        if path[i] == "{":
            end = path.index("}", i)
            name, _, conv = path[i + 1 : end].partition(":")
            out.append("0" if conv in ("int", "float") else "x.png" if conv == "path" else "x")
            i = end + 1
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def enumerate_routes(routes, prefix: str = "") -> list[tuple[str, str, str]]:
    """(kind, method, route path) for every route, mounts included ("http" or "websocket")."""
    from starlette.routing import Mount, Route, WebSocketRoute

    found = []
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI's included router (kept whole, matched lazily)
            context_prefix = getattr(getattr(route, "include_context", None), "prefix", "") or ""
            found.extend(enumerate_routes(route.original_router.routes, prefix + context_prefix))
        elif isinstance(route, Mount):
            inner = getattr(route.app, "routes", None) or getattr(getattr(route.app, "router", None), "routes", None)
            mount_path = prefix + route.path
            if inner is None:  # a static-files app: one request under its path
                found.append(("http", "GET", mount_path + "/x"))
            else:
                found.extend(enumerate_routes(inner, mount_path))
        elif isinstance(route, WebSocketRoute):
            found.append(("websocket", "WS", prefix + route.path))
        elif isinstance(route, Route):
            for method in sorted(route.methods or {"GET"}):
                if method != "HEAD":
                    found.append(("http", method, prefix + route.path))
    return found


def is_login_page(text: str) -> bool:
    """Gradio's page (or config) for a visitor who is not logged in: auth required, no components, and nothing
    else of the app (its API description embedded in the page would describe every endpoint)."""
    compact = text.replace(" ", "")
    return '"auth_required":true' in compact and '"components":[]' in compact and "named_endpoints" not in compact


WEBSOCKET_HANDSHAKE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def serve_in_thread(app) -> tuple[object, str]:
    """The app on a free local port (a real server: streaming routes answer their status, then the client leaves)."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    import httpx

    import webui

    webui.initialize()
    app = webui.create_app(with_ui=not webui.cmd_opts.nowebui)
    server, base = serve_in_thread(app)

    def report(**result: object) -> None:
        print(json.dumps(result), flush=True)

    with httpx.Client(base_url=base, timeout=10, follow_redirects=False) as client:
        for kind, method, route_path in enumerate_routes(app.router.routes):
            url = path_params(route_path) or "/"
            body = {} if method in ("POST", "PUT", "PATCH") else None
            try:
                with client.stream(
                    method if kind == "http" else "GET",
                    url,
                    json=body,
                    headers=WEBSOCKET_HANDSHAKE if kind == "websocket" else None,
                ) as response:
                    streaming = "event-stream" in response.headers.get("content-type", "")
                    text = next(response.iter_text(), "") if streaming else response.read().decode(errors="replace")
                    report(
                        path=route_path,
                        method=method,
                        status=response.status_code,
                        location=response.headers.get("location", ""),
                        body=text[:300],
                        login_page=is_login_page(text),
                    )
            except httpx.HTTPError as e:
                report(path=route_path, method=method, status=0, location="", body=f"{type(e).__name__}: {e}")
        if os.environ.get("PROBE_CREDENTIALS"):
            user, _, password = os.environ["PROBE_CREDENTIALS"].partition(":")
            print(json.dumps({"cmd_flags": client.get("/sdapi/v1/cmd-flags", auth=(user, password)).text}), flush=True)
    server.should_exit = True


if __name__ == "__main__":
    main()
