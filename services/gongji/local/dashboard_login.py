"""The local stack's dashboard credential and pseudonym key, generated into the stack's folder
(`gongji stack up`: .gongji/; `gongji demo`: its working directory) as files only their owner may
read (0600), kept across restarts of the stack, and handed to the services as
GONGJI_DASHBOARD_TOKEN_FILE and GONGJI_PSEUDONYM_KEY_FILE. Settings that already name a credential
(or GONGJI_DASHBOARD_AUTH=off) are left as they are.

What is printed is where the token is, never the token: a terminal's scrollback, a CI log or a
shared screen outlive the session, and the file's owner can read it (`cat .gongji/dashboard-token`)
and paste it into the login form once; the browser then holds an HttpOnly session cookie.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from gongji.local.errors import StackError
from gongji.settings import Settings

TOKEN_FILE = "dashboard-token"
KEY_FILE = "pseudonym-key"


def secret_file(folder: Path, name: str) -> Path:
    """`folder/name` holding a random secret (43 URL-safe characters, 256 bits), made 0600 if it is
    missing; an existing one is kept if only its owner can read it, else refused."""
    path = (Path(folder) / name).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise StackError(f"{path} is readable by others (mode {mode:o}): remove it, or chmod 600 it") from None
        return path
    with os.fdopen(descriptor, "w") as out:
        out.write(secrets.token_urlsafe(32) + "\n")
    return path


def with_dashboard_access(settings: Settings, folder: Path) -> Settings:
    """`settings` with the stack's token and pseudonym key files where they name none."""
    update: dict[str, Path] = {}
    named = settings.dashboard_token or settings.dashboard_token_file or settings.dashboard_user
    if settings.dashboard_auth == "on" and not named:
        update["dashboard_token_file"] = secret_file(folder, TOKEN_FILE)
    if not (settings.pseudonym_key or settings.pseudonym_key_file):
        update["pseudonym_key_file"] = secret_file(folder, KEY_FILE)
    return settings.model_copy(update=update)


def login_hint(settings: Settings) -> str:
    """Where the dashboard's credential is, for a line printed to the operator."""
    if settings.dashboard_auth == "off":
        return "no login: GONGJI_DASHBOARD_AUTH=off"
    if settings.dashboard_token_file:
        return f"access token in {settings.dashboard_token_file}"
    return "log in with GONGJI_DASHBOARD_USER" if settings.dashboard_user else "log in with GONGJI_DASHBOARD_TOKEN"
