"""Every setting is in the README's configuration table, and every GONGJI_ variable the repository
mentions is one Gongji reads: a setting added without a row, or a row left for a setting renamed or
gone, fails here (the table is the operator's reference; `Settings` is what the code reads)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from gongji.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
NAME = re.compile(r"GONGJI_[A-Z0-9_]*[A-Z0-9]")
# Read by something other than Settings: the state folder (gongji.local.state, before any setting
# is resolved) and the deployment scripts' own variables (deploy/compose, deploy/postgres).
NOT_SETTINGS = {"GONGJI_STATE_DIR", "GONGJI_SECRETS_DIR", "GONGJI_POSTGRES_SECRETS", "GONGJI_POSTGRES_ROLES"}


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    return README[start:README.index("\n## ", start + 1)]


def table_names() -> set[str]:
    """The variables named in the first cell of the configuration table's rows."""
    rows = [line for line in section("Pointing it at real servers").splitlines() if line.startswith("| `GONGJI_")]
    return {name for row in rows for name in NAME.findall(row.split(" | ")[0])}


def settings_names(model: type[BaseModel] = Settings, prefix: str = "GONGJI_") -> set[str]:
    names = set()
    for field, info in model.model_fields.items():
        name = prefix + field.upper()
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            names |= settings_names(info.annotation, name + "__")
        else:
            names.add(name)
    return names


def test_every_setting_has_a_row_and_every_row_a_setting():
    scalar = {name for name in settings_names() if "__" not in name}
    assert scalar - table_names() == set(), "settings without a row in README's configuration table"
    assert table_names() - settings_names() - NOT_SETTINGS == set(), "rows for settings Gongji does not read"


def test_the_nested_settings_are_documented_where_they_are_used():
    """GONGJI_FRAUD__<NAME> in the fraud rules' table, GONGJI_TOPICS__<NAME> with the topics."""
    fraud = section("Fraud signals (基金监管)")
    assert {n.removeprefix("GONGJI_FRAUD__") for n in settings_names() if n.startswith("GONGJI_FRAUD__")} \
        - set(re.findall(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*", fraud.replace("__", " "))) == set()
    topics = section("Topics")
    assert "GONGJI_TOPICS__<NAME>" in topics
    assert {n.removeprefix("GONGJI_TOPICS__").lower() for n in settings_names() if n.startswith("GONGJI_TOPICS__")} \
        - set(re.findall(r"`([a-z_]+)`", topics)) == set()


def test_every_variable_the_repository_names_is_read():
    nested = {name.split("__")[0] for name in settings_names() if "__" in name}  # GONGJI_FRAUD__<NAME>
    known = settings_names() | NOT_SETTINGS | nested
    files = [ROOT / "README.md", ROOT / "docker-compose.yml", ROOT / "Makefile", *(ROOT / "docs").glob("*.md"),
             *(path for path in (ROOT / "deploy").rglob("*") if path.is_file() and path.suffix in {"", ".md", ".sh", ".yaml", ".yml", ".toml", ".example", ".conf"})]
    named = {(path.relative_to(ROOT), name) for path in files for name in NAME.findall(path.read_text(encoding="utf-8"))}
    assert {(str(path), name) for path, name in named if name not in known} == set()


def test_the_check_sees_a_setting_without_a_row():
    class More(Settings):
        brand_new_seconds: int = 1

    assert "GONGJI_BRAND_NEW_SECONDS" in settings_names(More) - table_names()
