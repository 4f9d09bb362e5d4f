"""The page's extra head (A1111's script.js globals, javascript/*.js, extensions' JavaScript and CSS, the
localization) and the root-level `file=` route that serves those files and outputs.

A1111 extensions load their assets with URLs relative to the page, `file=<path>` (Gradio 3 served the whole
working directory there). Here the route serves only an allow-list: the repository's script.js, javascript/ and
style.css, the folders of the active extensions (web asset types only, never dot-files such as .git, nor files
whose names suggest secrets), the output folders and --gradio-allowed-path folders — each checked after
resolving symlinks. HTML, SVG and XML from outside the extension folders are sent as downloads, so an image
folder cannot serve script to the page.
"""

from __future__ import annotations

import html
import logging
import mimetypes
import os
from urllib.parse import quote

from modules import extensions, localization, paths_internal, shared

log = logging.getLogger(__name__)

ASSET_SUFFIXES = {".js", ".mjs", ".css", ".map", ".json", ".csv", ".txt", ".md", ".html", ".htm", ".png", ".jpg",
                  ".jpeg", ".gif", ".webp", ".avif", ".svg", ".ico", ".woff", ".woff2", ".ttf", ".otf", ".wasm"}
OUTPUT_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".avif", ".txt", ".json", ".mp4", ".webm", ".zip"}
ACTIVE_CONTENT_SUFFIXES = {".html", ".htm", ".xhtml", ".svg", ".xml"}
SECRET_WORDS = ("secret", "token", "password", "credential", "apikey", "api_key", "private")


def webpath(fn: str) -> str:
    """The `file=` URL of a file: relative to the repository when inside it, absolute otherwise; ?mtime busts caches."""
    path = os.path.abspath(fn)
    root = paths_internal.script_path
    web = os.path.relpath(path, root) if path.startswith(root + os.sep) else path
    return f"file={quote(web.replace(os.sep, '/'))}?{os.path.getmtime(path)}"


def _repo_javascript() -> list[str]:
    folder = os.path.join(paths_internal.script_path, "javascript")
    files = [os.path.join(paths_internal.script_path, "script.js")]
    if os.path.isdir(folder):
        files += [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.endswith((".js", ".mjs"))]
    return [f for f in files if os.path.isfile(f)]


def javascript_files() -> list[str]:
    """script.js first, then the repository's javascript/*, then each active extension's javascript/*.js|*.mjs."""
    files = _repo_javascript()
    for ext in extensions.active():
        files += [f.path for f in ext.list_files("javascript", ".js") + ext.list_files("javascript", ".mjs")]
    return files


def css_files() -> list[str]:
    """The repository's style.css, every active extension's style.css, then the user's user.css."""
    candidates = [os.path.join(paths_internal.script_path, "style.css")]
    candidates += [os.path.join(ext.path, "style.css") for ext in extensions.active()]
    candidates.append(os.path.join(paths_internal.data_path, "user.css"))
    return [f for f in candidates if os.path.isfile(f)]


def head_html() -> str:
    """Everything the page head needs for A1111 extensions (passed to gr.mount_gradio_app(head=...))."""
    parts = [f"<script type='text/javascript'>{localization.localization_js(shared.opts.localization)}</script>"]
    for fn in javascript_files():
        kind = "module" if fn.endswith(".mjs") else "text/javascript"
        parts.append(f"<script type='{kind}' src='{html.escape(webpath(fn))}'></script>")
    for fn in css_files():
        parts.append(f"<link rel='stylesheet' property='stylesheet' href='{html.escape(webpath(fn))}'>")
    return "\n".join(parts)


def _within(path: str, root: str) -> bool:
    root = os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _output_roots() -> list[str]:
    opts = shared.opts
    keys = ("outdir_samples", "outdir_txt2img_samples", "outdir_img2img_samples", "outdir_extras_samples",
            "outdir_grids", "outdir_txt2img_grids", "outdir_img2img_grids", "outdir_save", "outdir_init_images")
    roots = [paths_internal.default_output_dir]
    roots += [paths_internal.data_relative(getattr(opts, k)) for k in keys if getattr(opts, k, "")]
    return roots


def resolve_file(requested: str) -> tuple[str, bool]:
    """(real path, is active content to force as a download) for a `file=` request, or raise PermissionError /
    FileNotFoundError. Relative paths are relative to the repository."""
    if "\x00" in requested:  # no file has one; os.path would raise ValueError (a 500) instead of refusing
        raise PermissionError(requested)
    path = requested if os.path.isabs(requested) else os.path.join(paths_internal.script_path, requested)
    real = os.path.realpath(path)
    suffix = os.path.splitext(real)[1].lower()
    name = os.path.basename(real).lower()

    repo_files = {os.path.realpath(f) for f in _repo_javascript()}
    repo_files |= {os.path.realpath(os.path.join(paths_internal.script_path, "style.css"))}
    if real in repo_files or _within(real, os.path.join(paths_internal.script_path, "javascript")):
        return _existing(real), False

    for ext in extensions.active():
        if _within(real, ext.path):
            relative = os.path.relpath(real, os.path.realpath(ext.path))
            hidden = any(part.startswith(".") for part in relative.split(os.sep))
            secret = any(word in name.replace("-", "_") for word in SECRET_WORDS) or (
                name.startswith("config") and suffix == ".json")
            if hidden or secret or suffix not in ASSET_SUFFIXES:
                raise PermissionError(requested)
            return _existing(real), False

    allowed = _output_roots() + list(getattr(shared.cmd_opts, "gradio_allowed_path", None) or [])
    for root in allowed:
        if _within(real, root):
            relative = os.path.relpath(real, os.path.realpath(root))
            if any(part.startswith(".") for part in relative.split(os.sep)):
                raise PermissionError(requested)
            if suffix not in OUTPUT_SUFFIXES | ACTIVE_CONTENT_SUFFIXES:
                raise PermissionError(requested)
            return _existing(real), suffix in ACTIVE_CONTENT_SUFFIXES
    raise PermissionError(requested)


def _existing(path: str) -> str:
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    return path


def add_file_route(app, prefix: str = "") -> None:
    """Register GET `<prefix>/file=<path>` on the FastAPI app (before Gradio is mounted)."""
    from fastapi import HTTPException
    from fastapi.responses import FileResponse

    async def serve_file(path: str):
        try:
            real, download = resolve_file(path)
        except PermissionError:
            raise HTTPException(status_code=403, detail="File not allowed") from None
        except FileNotFoundError:
            raise HTTPException(status_code=404, detail="File not found") from None
        media_type = mimetypes.guess_type(real)[0] or "application/octet-stream"
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
        if download:
            return FileResponse(real, media_type="application/octet-stream", headers=headers,
                                filename=os.path.basename(real), content_disposition_type="attachment")
        return FileResponse(real, media_type=media_type, headers=headers)

    app.add_api_route(f"{prefix.rstrip('/')}/file={{path:path}}", serve_file, methods=["GET", "HEAD"],
                      include_in_schema=False)


def settings_json() -> str:
    """The settings as the page's `opts` object (A1111's #settings_json), for the JavaScript globals."""
    return shared.opts.dumpjson()
