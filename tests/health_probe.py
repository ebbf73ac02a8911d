"""A service's /healthz as a test reads it, for the unit and integration tiers alike."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def health(port: int) -> tuple[int, dict]:
    """(status, body) of http://127.0.0.1:<port>/healthz; (0, {}) while nothing serves there yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:  # not serving yet, or gone (URLError, a reset connection)
        return 0, {}
