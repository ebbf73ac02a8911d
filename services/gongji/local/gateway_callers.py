"""The local stack's gateway caller: one institution system's key, generated into the stack's folder
on start, acting for every institution of the synthetic traffic, so `gongji run gateway` on the
stack has a caller to authenticate and `gongji stack up` can name it (README, "Gateway"). A fresh
secret per stack; the files are the owner's only (0600)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gongji.local.credentials import write_private

KEY_ID = "local-his"
CALLERS_FILE = "gateway-callers.toml"


def generate(folder: Path) -> Path:
    """Write a callers file naming one caller for the synthetic institutions, with a new secret."""
    import secrets

    from gongji.local.synthetic import Traffic

    secret = folder / f"gateway-{KEY_ID}.key"
    write_private(secret, secrets.token_urlsafe(48) + "\n")
    codes = ", ".join(f'"{row["fixmedins_code"]}"' for row in Traffic(persons=1).institutions)
    callers = folder / CALLERS_FILE
    write_private(callers, f'[callers.{KEY_ID}]\nsecret_file = "{secret.name}"\nfixmedins_codes = [{codes}]\n')
    return callers


def settings(state: dict[str, Any]) -> dict[str, Any]:
    """The Settings fields that give a gateway on the stack its callers, and `gongji call` the
    stack's gateway (once the services have recorded where it listens) and its caller."""
    callers = state.get("gateway_callers_file")
    if not callers:
        return {}
    return {"gateway_callers_file": callers, "gateway_caller": KEY_ID,
            "gateway_caller_secret_file": Path(callers).parent / f"gateway-{KEY_ID}.key",
            **({"gateway_url": state["gateway_url"]} if state.get("gateway_url") else {})}


def variables(state: dict[str, Any]) -> str:
    """Where the stack's gateway listens and who may call it, as environment assignments (the
    file holding the caller's secret, never the secret)."""
    found = settings(state)
    return " ".join(f"GONGJI_{name.upper()}={found[name]}" for name in
                    ("gateway_url", "gateway_caller", "gateway_caller_secret_file") if name in found)
