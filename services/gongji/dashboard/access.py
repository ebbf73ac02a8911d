"""Who may see the dashboard: every route answers 401 (with WWW-Authenticate) unless the request
carries one of

- `Authorization: Bearer <GONGJI_DASHBOARD_TOKEN>` (a program: curl, a probe of one's own);
- `Authorization: Basic` with GONGJI_DASHBOARD_USER and the password whose argon2 hash is
  GONGJI_DASHBOARD_PASSWORD_HASH (a browser asks for them itself);
- the session cookie the login form (`/login`, the one open route) sets for the token or the
  user's password: HttpOnly, SameSite=Strict, Secure under TLS, valid SESSION_SECONDS. It is its
  expiry and a random nonce, signed with a key derived from the token: it holds through a restart
  of the dashboard (an open page reconnects by itself), works on every replica with the same
  token, and dies when the token is changed. With a user and no token the key is this process's
  own (the browser's Basic credentials carry it through a restart). Logging out revokes it here.

Secrets are compared in constant time (digests of equal length through `hmac.compare_digest`;
argon2's own verification). A browser that is refused gets the login form as the 401's body.
With GONGJI_DASHBOARD_AUTH=off nothing is checked: for a reverse proxy that authenticates (an
oauth2-proxy in front), and only with the dashboard on loopback. The dashboard refuses to start
with no credential and auth on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import html
import secrets
import time

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gongji.common.observe import is_loopback
from gongji.settings import Settings

REALM = "gongji"
COOKIE = "gongji_session"
SESSION_SECONDS = 12 * 3600
MAX_REVOKED = 10_000
REMEMBER_BASIC = 300.0  # seconds a verified user:password is not verified by argon2 again
MIN_TOKEN = 16
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}


class AccessError(ValueError):
    """The dashboard's access settings are refused: it does not start."""


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class Access:
    """The credentials of one dashboard, its login sessions, and the aiohttp middleware that checks them."""

    def __init__(self, token: str | None, user: str | None, password_hash: str | None, *, secure: bool):
        self._token = _digest(token) if token else None
        self.user = user
        self._hash = password_hash
        self.secure = secure  # TLS: the cookie is Secure
        self._hasher = PasswordHasher()
        # Sessions signed under the token survive a restart; with a user alone, under a key of this
        # process (an argon2 hash is not a secret to sign with: whoever read it could forge one).
        self._session_key = hmac.new(b"gongji-dashboard-session", self._token, hashlib.sha256).digest() \
            if self._token else secrets.token_bytes(32)
        self._revoked: dict[str, float] = {}  # nonce → when its session would have expired (Unix time)
        self._pepper = secrets.token_bytes(32)  # keys the memory of verified Basic credentials
        self._verified: dict[bytes, float] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Access | None:
        """The dashboard's access, or None with auth off; AccessError for settings it must refuse."""
        if settings.dashboard_auth == "off":
            if not is_loopback(settings.dashboard_host):
                raise AccessError(f"GONGJI_DASHBOARD_AUTH=off with GONGJI_DASHBOARD_HOST={settings.dashboard_host}: "
                                  "without authentication the dashboard listens on loopback only, behind the "
                                  "reverse proxy that authenticates")
            return None
        try:
            token, password_hash = settings.dashboard_token_value(), settings.dashboard_password_hash_value()
        except ValueError as error:
            raise AccessError(str(error)) from None
        if not token and not password_hash:
            raise AccessError("no credential: set GONGJI_DASHBOARD_TOKEN (or _FILE), or GONGJI_DASHBOARD_USER and "
                              "GONGJI_DASHBOARD_PASSWORD_HASH (or _FILE, an argon2 hash), or GONGJI_DASHBOARD_AUTH=off "
                              "behind a reverse proxy that authenticates")
        if token is not None and len(token) < MIN_TOKEN:
            raise AccessError(f"GONGJI_DASHBOARD_TOKEN is shorter than {MIN_TOKEN} characters")
        if password_hash is not None and not password_hash.startswith("$argon2"):
            raise AccessError("GONGJI_DASHBOARD_PASSWORD_HASH is not an argon2 hash ($argon2id$…): make one with "
                              "python -c 'import argon2, getpass; "
                              "print(argon2.PasswordHasher().hash(getpass.getpass()))'")
        return cls(token, settings.dashboard_user, password_hash, secure=bool(settings.dashboard_tls_certfile))

    # ------------------------------------------------------------------ checking credentials
    def token_ok(self, given: str) -> bool:
        return self._token is not None and hmac.compare_digest(_digest(given), self._token)

    async def password_ok(self, user: str, password: str) -> bool:
        """The user and its password; argon2 runs (in a thread) whether or not the user is right."""
        if self._hash is None or self.user is None:
            return False
        remembered = hmac.new(self._pepper, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        if self._verified.get(remembered, 0.0) > time.monotonic():
            return True
        user_ok = hmac.compare_digest(_digest(user), _digest(self.user))
        password_ok = await asyncio.get_running_loop().run_in_executor(None, self._verify, password)
        if user_ok and password_ok:
            self._verified = {k: t for k, t in self._verified.items() if t > time.monotonic()}
            self._verified[remembered] = time.monotonic() + REMEMBER_BASIC
        return user_ok and password_ok

    def _verify(self, password: str) -> bool:
        try:
            return self._hasher.verify(self._hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def session_ok(self, cookie: str | None) -> bool:
        """A cookie this dashboard's credentials signed, not expired, not logged out."""
        expires, nonce, mac = (cookie or "").split(".", 2) if (cookie or "").count(".") == 2 else ("", "", "")
        if not expires.isdigit() or not hmac.compare_digest(self._sign(f"{expires}.{nonce}"), mac):
            return False
        return int(expires) > time.time() and nonce not in self._revoked

    def _sign(self, text: str) -> str:
        return hmac.new(self._session_key, text.encode(), hashlib.sha256).hexdigest()

    async def allowed(self, request: web.Request) -> bool:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            return self.token_ok(value.strip())
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return await self.password_ok(user, password)
        return self.session_ok(request.cookies.get(COOKIE))

    # ------------------------------------------------------------------ sessions
    def open_session(self) -> str:
        text = f"{int(time.time() + SESSION_SECONDS)}.{secrets.token_hex(16)}"
        return f"{text}.{self._sign(text)}"

    def close_session(self, cookie: str | None) -> None:
        if not self.session_ok(cookie):
            return
        expires, nonce, _ = cookie.split(".", 2)
        now = time.time()
        self._revoked = {n: t for n, t in self._revoked.items() if t > now}
        while len(self._revoked) >= MAX_REVOKED:  # the oldest go first (they expire first too)
            self._revoked.pop(next(iter(self._revoked)))
        self._revoked[nonce] = int(expires)

    # ------------------------------------------------------------------ aiohttp
    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        if request.path == "/login" or await self.allowed(request):
            return await handler(request)
        return self.challenge(request)

    @staticmethod
    async def on_prepare(_request: web.Request, response: web.StreamResponse) -> None:
        """Every response, a stream included, before its headers go: no framing, no sniffing."""
        response.headers.update(SECURITY_HEADERS)

    def challenge(self, request: web.Request, message: str = "", status: int = 401) -> web.Response:
        """401: what schemes are accepted, and the login form for a browser."""
        headers = [("WWW-Authenticate", f'Bearer realm="{REALM}"')]
        if self.user is not None:
            headers.append(("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'))
        if "text/html" in request.headers.get("Accept", ""):
            response = web.Response(status=status, text=self.login_page(message), content_type="text/html")
        else:
            response = web.json_response({"error": message or "authentication required"}, status=status)
        for name, value in headers:
            response.headers.add(name, value)
        response.headers["Cache-Control"] = "no-store"
        return response

    def login_page(self, message: str = "") -> str:
        fields = []
        if self._token is not None:
            fields.append('<label>访问令牌 Access token <input name="token" type="password" autocomplete="off" autofocus>'
                          "</label>")
        if self.user is not None:
            fields.append('<label>用户 User <input name="user" autocomplete="username"></label>'
                          '<label>密码 Password <input name="password" type="password" autocomplete="current-password">'
                          "</label>")
        note = f'<p class="error" id="login-error">{html.escape(message)}</p>' if message else ""
        return (LOGIN_PAGE.replace("{note}", note).replace("{fields}", "<p>或 or</p>".join(fields)))

    async def login(self, request: web.Request) -> web.StreamResponse:
        """GET: the form. POST: a token, or user and password; right: a session cookie and back to the page."""
        if request.method != "POST":
            if await self.allowed(request):
                return _see_other("/")
            return web.Response(text=self.login_page(), content_type="text/html", headers={"Cache-Control": "no-store"})
        origin = request.headers.get("Origin")
        if origin and origin != "null" and origin.split("://", 1)[-1] != request.host:
            return self.challenge(request, "login from another site refused", status=403)
        form = await request.post()
        token, user, password = (str(form.get(name) or "") for name in ("token", "user", "password"))
        if (token and self.token_ok(token)) or (user and await self.password_ok(user, password)):
            response = _see_other("/")
            response.set_cookie(COOKIE, self.open_session(), max_age=SESSION_SECONDS, path="/", httponly=True,
                                samesite="Strict", secure=self.secure)
            return response
        return self.challenge(request, "凭据错误 Wrong credentials.")

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self.close_session(request.cookies.get(COOKIE))
        response = _see_other("/login")
        response.del_cookie(COOKIE, path="/")
        return response


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


LOGIN_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>共济 Gongji · 登录 sign in</title>
<style>body{font-family:system-ui,sans-serif;background:#f5f7fb;color:#1d2939;display:grid;place-items:center;
min-height:90vh}form{background:#fff;padding:28px 32px;border-radius:10px;box-shadow:0 1px 3px #0002;display:grid;
gap:12px;min-width:320px}label{display:grid;gap:4px;font-size:13px;color:#475467}input{padding:8px;font-size:14px}
button{padding:9px;font-size:14px;background:#0f766e;color:#fff;border:0;border-radius:6px}
.error{color:#b42318;margin:0}p{margin:0;text-align:center;color:#98a2b3}</style></head>
<body><form method="post" action="/login" id="login"><strong>共济 Gongji 看板 dashboard</strong>{note}{fields}
<button type="submit">登录 Sign in</button></form></body></html>
"""
