"""`gongji call FILE|-`: one request in the national envelope to a gateway, signed as a caller, the
answer printed as JSON: what an integration engineer tries before the HIS is wired, and what the
README's curl example does without openssl.

The envelope is the national one (`infno`, `msgid`, `fixmedins_code`, `inf_time`, `input`); a
missing `msgid` is made (and told on stderr, to ask again with it) and a missing `inf_time` is the
present, local time. Where and as whom: GONGJI_GATEWAY_URL, GONGJI_GATEWAY_CALLER and
GONGJI_GATEWAY_CALLER_SECRET_FILE, which `gongji stack up` prints for its own gateway and caller,
and which a command run beside the stack finds on its own. Exit status 0 for `infcode` 0, 1 for an
answer that refuses (`infcode` -1, an HTTP error), one line on stderr when no answer came."""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gongji.contract.wire import SHANGHAI
from gongji.gateway.callers import Caller
from gongji.gateway.national import LOCAL_TIME

if TYPE_CHECKING:
    from gongji.settings import Settings


def envelope(request: dict[str, Any], now: datetime) -> dict[str, Any]:
    """`request` with `msgid` and `inf_time` filled where missing (a msgid the national way: up to
    30 characters, unique per institution), nothing else changed."""
    if not isinstance(request, dict) or "infno" not in request:
        raise ValueError("not a national envelope: an object with infno, fixmedins_code and input")
    filled = dict(request)
    filled.setdefault("msgid", now.astimezone(SHANGHAI).strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:16])
    filled.setdefault("inf_time", now.astimezone(SHANGHAI).strftime(LOCAL_TIME))
    return filled


def caller_of(settings: Settings) -> Caller:
    if not settings.gateway_caller or not settings.gateway_caller_secret_file:
        raise ValueError("no caller: set GONGJI_GATEWAY_CALLER and GONGJI_GATEWAY_CALLER_SECRET_FILE "
                         "(`gongji stack up` prints its caller's)")
    try:
        secret = settings.gateway_caller_secret_file.read_bytes().rstrip(b"\r\n")
    except OSError as error:
        raise ValueError(f"GONGJI_GATEWAY_CALLER_SECRET_FILE {settings.gateway_caller_secret_file}: "
                         f"{error.strerror}") from None
    return Caller(settings.gateway_caller, secret)


def call(settings: Settings, request: dict[str, Any], timeout: float = 30.0) -> tuple[int, dict[str, Any]]:
    """POST the signed request; (HTTP status, the answer's JSON)."""
    import urllib.error
    import urllib.request

    if not settings.gateway_url:
        raise ValueError("no gateway: set GONGJI_GATEWAY_URL (`gongji stack up` prints its gateway's)")
    body = json.dumps(request, ensure_ascii=False).encode()
    headers = {**caller_of(settings).headers(int(time.time()), body), "Content-Type": "application/json"}
    try:
        with urllib.request.urlopen(urllib.request.Request(settings.gateway_url, data=body, headers=headers),
                                    timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:  # 401, 403, 400: the gateway's answer is in the body
        text = error.read().decode("utf-8", "replace")
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, {"infcode": -1, "err_msg": text.strip() or error.reason}
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise ConnectionError(f"no answer from the gateway at {settings.gateway_url} ({reason}); is it running, "
                              "and is GONGJI_GATEWAY_URL right?") from None


def command(args: argparse.Namespace, resolve: Callable[[], Settings]) -> int:
    text = sys.stdin.read() if args.file == "-" else _read(args.file)
    try:
        given = json.loads(text)
        request = envelope(given, datetime.now(SHANGHAI))
    except ValueError as error:
        sys.exit(f"gongji: call: {args.file}: {error}")
    if "msgid" not in given:
        print(f"msgid {request['msgid']} (send the same to ask again)", file=sys.stderr)
    from gongji.settings import Settings

    settings = Settings()
    try:
        # GONGJI_GATEWAY_URL names the gateway; else the running local stack's, and its caller.
        status, answer = call(settings if settings.gateway_url else resolve(), request)
    except (ValueError, ConnectionError) as error:
        sys.exit(f"gongji: call: {error}")
    print(json.dumps(answer, ensure_ascii=False, indent=2))
    return 0 if status == 200 and answer.get("infcode") == 0 else 1


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError as error:
        sys.exit(f"gongji: call: {path}: {error.strerror}")
