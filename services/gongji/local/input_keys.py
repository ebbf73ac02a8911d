"""The local stack's input signing key: generated into the stack's folder on start, so the demo,
the bench and `gongji stack up` sign their input and settlement runs with GONGJI_REQUIRE_SIGNED_INPUT
on (README, "Signed input"). A fresh secret per stack; the files are the owner's only (0600)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from gongji.local.credentials import write_private

KEY_ID = "local"
KEYS_FILE = "input-keys.toml"


def generate(folder: Path) -> Path:
    """Write a keys file naming one key, every region, with a new secret; returns its path."""
    secret = folder / f"input-{KEY_ID}.key"
    write_private(secret, secrets.token_urlsafe(48) + "\n")
    keys = folder / KEYS_FILE
    write_private(keys, f'[keys.{KEY_ID}]\nalgorithm = "hmac-sha256"\nsecret_file = "{secret.name}"\n')
    return keys


def settings(state: dict[str, Any]) -> dict[str, Any]:
    """The Settings fields that make a process on the stack sign and require signed input."""
    keys = state.get("input_keys_file")
    if not keys:
        return {}
    return {"input_keys_file": keys, "require_signed_input": True, "input_signing_key": KEY_ID}

