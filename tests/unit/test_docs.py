"""The documentation agrees with the code and stays inside the repository: docs/FIELDS.md and
docs/COMMANDS.md are what docs/generate.py writes from the schemas, the policy files and the parser;
docs/CONTRACT.md names every field of every schema and exactly the rejection codes settlement has;
and no link in README.md, docs/ or deploy/ leads outside the repository or to nothing."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path
from typing import get_args

import pytest

from gongji.settlement.domain import RejectCode

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONTRACT = DOCS / "CONTRACT.md"


@pytest.fixture(scope="module")
def generate():
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.pop("docs_generate", None)
    spec.loader.exec_module(module)
    return module


def test_the_generated_docs_are_what_the_code_says(generate):
    assert not generate.stale(), (f"docs/{', docs/'.join(generate.stale())} out of date: "
                                  "run .venv/bin/python docs/generate.py and commit the result")


def test_an_option_added_to_the_parser_makes_commands_stale(generate, monkeypatch):
    import gongji.cli

    original = gongji.cli.parser

    def with_one_more() -> object:
        parser = original()
        parser.add_argument("--not-documented-yet", help="an option docs/COMMANDS.md does not have")
        return parser

    monkeypatch.setattr(gongji.cli, "parser", with_one_more)
    assert "`--not-documented-yet`" in generate.commands()
    assert generate.stale() == ["COMMANDS.md"]


def test_a_field_gone_from_a_schema_makes_fields_stale(generate, monkeypatch, tmp_path):
    schemas = tmp_path / "schemas"
    shutil.copytree(generate.SCHEMAS, schemas)
    person = json.loads((schemas / "person.avsc").read_text(encoding="utf-8"))
    person["fields"] = [field for field in person["fields"] if field["name"] != "cvlserv_flag"]
    (schemas / "person.avsc").write_text(json.dumps(person), encoding="utf-8")
    monkeypatch.setattr(generate, "SCHEMAS", schemas)
    assert "`cvlserv_flag`" not in generate.fields()
    assert generate.stale() == ["FIELDS.md"]


def test_a_field_without_words_stops_the_generator(generate, monkeypatch, tmp_path):
    schemas = tmp_path / "schemas"
    shutil.copytree(generate.SCHEMAS, schemas)
    claim = json.loads((schemas / "claim.avsc").read_text(encoding="utf-8"))
    claim["fields"].append({"name": "new_field", "type": ["null", "string"], "default": None})
    (schemas / "claim.avsc").write_text(json.dumps(claim), encoding="utf-8")
    monkeypatch.setattr(generate, "SCHEMAS", schemas)
    with pytest.raises(SystemExit, match="Claim.new_field has no doc"):
        generate.fields()


def test_fields_lists_the_person_codes_the_policies_accept():
    text = (DOCS / "FIELDS.md").read_text(encoding="utf-8")
    for name in ("`chronic_diseases`", "`cvlserv_flag`", "`psn_idet_type`", "`tekun`", "`dibao_edge`", "`I10`"):
        assert name in text


def _field_names(avro: object) -> list[str]:
    """Every field name of a schema, nested records' too."""
    if isinstance(avro, list):
        return [name for branch in avro for name in _field_names(branch)]
    if not isinstance(avro, dict):
        return []
    if avro.get("type") == "record":
        return [name for field in avro["fields"] for name in [field["name"], *_field_names(field["type"])]]
    if avro.get("type") == "array":
        return _field_names(avro["items"])
    return _field_names(avro["type"]) if isinstance(avro.get("type"), (dict, list)) else []


def test_the_contract_names_every_field_of_every_schema():
    named = set(re.findall(r"`([a-z_]+)`", CONTRACT.read_text(encoding="utf-8")))
    missing = sorted(f"{path.stem}.{name}" for path in (ROOT / "schemas").glob("*.avsc")
                     for name in _field_names(json.loads(path.read_text(encoding="utf-8"))) if name not in named)
    assert not missing, f"docs/CONTRACT.md does not name {missing}"


def documented_codes(text: str) -> set[str]:
    """The codes of CONTRACT.md's rejection list: the `CODE`s that open each item of its bullets."""
    section = text.split("**rejection**", 1)[1].split("\n\n", 1)[0]
    return {code for line in section.splitlines() if line.startswith("- ")
            for code in re.findall(r"`([A-Z_]+)`", line.split(":", 1)[0])}


def test_the_contract_lists_exactly_the_rejection_codes_of_settlement():
    documented, code = documented_codes(CONTRACT.read_text(encoding="utf-8")), set(get_args(RejectCode))
    assert documented - code == set(), f"documented but gone: {sorted(documented - code)}"
    assert code - documented == set(), f"not in docs/CONTRACT.md: {sorted(code - documented)}"


def test_the_rejection_list_is_read_as_it_is_written():
    """The reader above can fail: a code dropped from the list, or an unknown one added, is seen."""
    text = CONTRACT.read_text(encoding="utf-8")
    assert "DUPLICATE_CONFLICT" not in documented_codes(text.replace("- `DUPLICATE_CONFLICT`:", "- "))
    assert "GONE_CODE" in documented_codes(text.replace("- `NO_POLICY`:", "- `NO_POLICY`, `GONE_CODE`:"))


def test_settlement_refuses_only_with_codes_it_declares():
    """Every code a settlement module writes is one of RejectCode (so documented)."""
    used = set()
    for path in (ROOT / "services" / "gongji" / "settlement").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r'err_code="([A-Z_]+)"', text)) | set(re.findall(r'_reject\(\s*"([A-Z_]+)"', text))
    assert used and used <= set(get_args(RejectCode)), sorted(used - set(get_args(RejectCode)))


# Links ---------------------------------------------------------------------------------------------

#: URLs allowed in the documentation, each with the reason it leads nowhere outside. None is an
#: outside reference: the repository carries what a reader needs.
ALLOWED_HOSTS = {
    "127.0.0.1": "the reader's own machine: an address `gongji` serves locally",
    "localhost": "the reader's own machine: an address `gongji` serves locally",
    "sso.example.gov.cn": "a placeholder in a configuration example, to be replaced by the centre's own",
}
LINKED = [ROOT / "README.md", *sorted(DOCS.rglob("*.md")),
          *sorted(path for path in (ROOT / "deploy").rglob("*") if path.is_file() and path.suffix != ".lock")]
URL = re.compile(r"(?:https?|ftp)://[^\s)\]>\"'`]+", re.IGNORECASE)
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)|<a\s+href=\"([^\"]+)\"|^\[[^\]]+\]:\s*(\S+)", re.MULTILINE)


def slug(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading: lower case, punctuation gone, spaces to '-'."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return ({slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}
            | set(re.findall(r"<a id=\"([^\"]+)\"", text)))


def link_problems(path: Path, root: Path = ROOT) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    problems = []
    for url in URL.findall(text):
        host = re.split(r"[/:?#]", url.split("://", 1)[1], maxsplit=1)[0].rsplit("@", 1)[-1]
        if host not in ALLOWED_HOSTS:
            problems.append(f"{path.relative_to(root)}: {url} leads outside the repository")
    if path.suffix != ".md":
        return problems
    for match in MARKDOWN_LINK.finditer(text):
        target = next(group for group in match.groups() if group)
        if "://" in target or target.startswith("mailto:"):
            continue  # judged above as a URL
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.is_relative_to(root) or not resolved.exists():
            problems.append(f"{path.relative_to(root)}: {target} names no file of the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{path.relative_to(root)}: {target} names no heading of {resolved.relative_to(root)}")
    return problems


@pytest.mark.parametrize("path", LINKED, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_link_leads_outside_the_repository_or_to_nothing(path):
    problems = link_problems(path)
    assert not problems, "\n".join(problems)


def test_the_link_check_sees_each_kind_of_bad_link(tmp_path):
    (tmp_path / "there.md").write_text("# A heading\n\n<a id=\"kept\"></a>\n", encoding="utf-8")
    good = tmp_path / "good.md"
    good.write_text("[a](there.md) [b](there.md#a-heading) [c](there.md#kept) [d](#own) "
                    "http://127.0.0.1:8350/\n\n## Own\n", encoding="utf-8")
    assert link_problems(good, tmp_path) == []
    bad = tmp_path / "bad.md"
    bad.write_text("[a](missing.md) [b](there.md#no-such) [c](https://example.org/x) [d](../../etc/passwd)\n"
                   "see https://pypi.org/project/x/\n", encoding="utf-8")
    problems = link_problems(bad, tmp_path)
    assert len(problems) == 5, problems
    assert sum("leads outside" in problem for problem in problems) == 2


def test_headings_slug_as_a_renderer_makes_them():
    assert slug("The `gongji` command") == "the-gongji-command"
    assert slug("Fraud signals (基金监管)") == "fraud-signals-基金监管"
    assert slug("Exactly-once effect, without Kafka transactions") == "exactly-once-effect-without-kafka-transactions"


def test_the_readme_command_table_names_every_command_and_service():
    """The README stays the entry point: its command table names each command of the parser and
    each service `gongji run` starts (their options are in docs/COMMANDS.md)."""
    import argparse

    from gongji.cli import parser

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("\n## The `gongji` command\n", 1)[1].split("\n## ")[0]
    commands = next(action for action in parser()._actions if isinstance(action, argparse._SubParsersAction))
    wanted = [f"gongji {name}" for name in commands.choices]
    services = next(action for action in commands.choices["run"]._actions if action.dest == "service").choices
    wanted += [f"gongji run {service}" for service in services]
    missing = [name for name in wanted if f"`{name}" not in table]
    assert not missing, f"README.md's command table does not name {missing}"
