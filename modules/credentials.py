"""User names and passwords from --api-auth / --gradio-auth / --gradio-auth-path, checked in constant time.

One policy for the whole server: the API uses --api-auth when given, else the UI's credentials, so a server
with a UI password never leaves its API open (A1111 does, issue #17411).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from modules.errors import UserError

log = logging.getLogger(__name__)


def parse_credentials(text: str | None, source: str) -> dict[str, str]:
    """``"user:pass,user2:pass2"`` (commas or new lines between entries) → ``{user: password}``.

    The password is everything after the first colon, so it may contain colons; `source` names the flag or file
    in the error for a malformed entry.
    """
    creds: dict[str, str] = {}
    for number, entry in enumerate((text or "").replace("\n", ",").split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        user, sep, password = entry.partition(":")
        if not sep or not user:
            # The entry itself is not shown: it may be a password typed without its user name.
            raise UserError(f"{source}: entry {number} is not in the form user:password.")
        creds[user] = password
    return creds


def read_credentials_file(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise UserError(f"Cannot read --gradio-auth-path file {path}: {e}") from e
    return parse_credentials(text, f"--gradio-auth-path {path}")


def ui_credentials(cmd_opts: Any) -> dict[str, str]:
    """--gradio-auth plus the entries of --gradio-auth-path."""
    creds = parse_credentials(cmd_opts.gradio_auth, "--gradio-auth")
    if cmd_opts.gradio_auth_path:
        creds.update(read_credentials_file(cmd_opts.gradio_auth_path))
    return creds


def api_credentials(cmd_opts: Any) -> dict[str, str]:
    """--api-auth if given, else the UI's credentials (empty: the API is open)."""
    if cmd_opts.api_auth:
        return parse_credentials(cmd_opts.api_auth, "--api-auth")
    creds = ui_credentials(cmd_opts)
    if creds:
        log.info("API: no --api-auth given; the API requires the --gradio-auth credentials.")
    return creds


def check_credentials(creds: dict[str, str], user: str, password: str) -> bool:
    """True if (user, password) is one of `creds`. Every entry is compared, each in constant time, so the answer
    takes the same time whichever part is wrong."""
    given_user = user.encode("utf-8")
    given_password = password.encode("utf-8")
    ok = False
    for known_user, known_password in creds.items():
        user_ok = hmac.compare_digest(given_user, known_user.encode("utf-8"))
        password_ok = hmac.compare_digest(given_password, known_password.encode("utf-8"))
        ok |= user_ok & password_ok
    return ok
