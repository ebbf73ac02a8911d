"""The layout holds: no import cycle, the shared layers import no bounded context, the pure cores
import no I/O, contexts meet only through the published language, and no module grows past 450
lines. Read from the source (ast), so an import inside a function counts too; an import under
`if TYPE_CHECKING:` is a type hint, not a runtime edge, and does not."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

import gongji

pytestmark = pytest.mark.unit

ROOT = Path(gongji.__file__).parent
CONTEXTS = ("settlement", "ledger", "clearing", "fraud", "dashboard", "gateway")
SHARED = ("common", "contract")
#: The composition roots and the one-machine tools: they may import anything.
ROOTS = ("gongji.cli", "gongji.services", "gongji.__main__", "gongji.local")
#: Pure modules: rules, state, figures and the published language. No client of any server, no
#: serialisation format, no clock-driven I/O.
PURE = ("gongji.contract", "gongji.settings", "gongji.common.money", "gongji.common.pseudonym",
        "gongji.settlement.domain", "gongji.settlement.events", "gongji.settlement.rules", "gongji.settlement.benefits",
        "gongji.settlement.policy", "gongji.settlement.planning", "gongji.settlement.steps", "gongji.settlement.family",
        "gongji.settlement.regions", "gongji.settlement.study_tally", "gongji.settlement.catalogue", "gongji.ledger.domain",
        "gongji.clearing.domain", "gongji.fraud.domain", "gongji.fraud.rules", "gongji.dashboard.domain",
        "gongji.gateway.national")
IO_LIBRARIES = {"aiokafka", "kafka", "redis", "psycopg", "faust", "aiohttp", "fastavro", "socket", "subprocess",
                "asyncio", "rich"}
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


@cache
def imports(module: str) -> frozenset[str]:
    """Every module `module` imports at run time: gongji modules by their full name (a name
    imported from a package that is a module of its own counts as that module), others by their
    top-level package."""
    tree = ast.parse(MODULES[module].read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                package = module.split(".")[: len(module.split(".")) - node.level + (module in _packages())]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        if _type_checking_only(node, parents):
            continue
        for name in names:
            if name.startswith("gongji"):
                if name in MODULES:
                    found.add(name)
            else:
                found.add(name.split(".")[0])
    return frozenset(found - {module})


@cache
def _packages() -> frozenset[str]:
    return frozenset(name for name, path in MODULES.items() if path.name == "__init__.py")


def gongji_imports(module: str) -> set[str]:
    return {name for name in imports(module) if name.startswith("gongji.")}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def cycles(edges: Callable[[str], set[str]] | None = None) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan) in the graph of `edges`
    (default: the gongji imports)."""
    edges = edges or gongji_imports
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges(v)):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in MODULES:
        if module not in index:
            visit(module)
    return found


def test_the_walk_sees_imports_inside_functions_and_skips_type_hints():
    # Guards the guard: the CLI imports its commands lazily, inside functions; the fraud rules name
    # their settings type under TYPE_CHECKING only.
    assert any(name.startswith("gongji.local") for name in imports("gongji.cli")) or \
        any(name.startswith("gongji.local") for name in imports("gongji.services"))
    assert "gongji.settings" not in imports("gongji.fraud.domain")


def test_no_import_cycle_anywhere():
    assert cycles() == []


def test_a_cycle_would_be_found():
    # The detector itself: one made-up back edge against a real import is a cycle.
    module = "gongji.settlement.rules"
    imported = sorted(gongji_imports(module))[0]

    def with_back_edge(name: str) -> set[str]:
        return gongji_imports(name) | ({module} if name == imported else set())

    assert any({module, imported} <= set(cycle) for cycle in cycles(with_back_edge))


@pytest.mark.parametrize("module", [m for m in MODULES if layer(m) in SHARED or m == "gongji.settings"])
def test_shared_layers_import_no_bounded_context(module):
    """common/ is infrastructure, contract/ the published language, settings the knobs: none may
    depend on a context or on the one-machine tools."""
    wrong = {name for name in gongji_imports(module) if layer(name) in (*CONTEXTS, "local", "cli", "services")}
    assert not wrong, f"{module} imports {sorted(wrong)}"


def test_contract_is_pure_language():
    for module in (m for m in MODULES if layer(m) == "contract"):
        wrong = {name for name in imports(module) if name.startswith("gongji.") and layer(name) != "contract"}
        wrong |= imports(module) & IO_LIBRARIES
        assert not wrong, f"{module} imports {sorted(wrong)}"


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith(PURE)])
def test_pure_modules_do_no_io(module):
    assert not imports(module) & IO_LIBRARIES, f"{module} imports {sorted(imports(module) & IO_LIBRARIES)}"


@pytest.mark.parametrize("context", CONTEXTS)
def test_contexts_meet_only_through_the_contract(context):
    """A bounded context imports common/, contract/, settings and itself, never another context:
    what one context tells another travels on a topic, in the published language. Its `commands`
    module composes its process and may read another's reference data (the dashboard labels
    regions with the names in settlement's policy files)."""
    for module in (m for m in MODULES if layer(m) == context and m != f"gongji.{context}.commands"):
        wrong = {name for name in gongji_imports(module) if layer(name) not in (context, *SHARED, "settings")}
        assert not wrong, f"{module} imports {sorted(wrong)}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_450_lines(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(ROOT.parent)}: {lines} lines"


README = ROOT.parents[1] / "README.md"


def layout_entries() -> dict[str, str]:
    """The README's layout section: each entry's name ("settlement/", "cli.py") → its text."""
    block = README.read_text(encoding="utf-8").split("\n## Layout\n", 1)[1].split("```", 2)[1]
    entries: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        if match := re.match(r"^  (\S+)\s{2,}(.*)$", line):
            current = match.group(1)
            entries[current] = match.group(2)
        elif current and line.startswith("   "):
            entries[current] += " " + line.strip()
    return entries


def test_the_readme_layout_names_every_folder_and_module():
    entries = layout_entries()
    missing = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if len(parts) == 1:
            if parts[0] != "__init__.py" and parts[0] not in entries:
                missing.append(parts[0])
            continue
        folder = parts[0] + "/"
        word = parts[1] + "/" if len(parts) > 2 else parts[1].removesuffix(".py")
        if word == "__init__":
            continue
        if folder not in entries or not re.search(rf"(?<![\w./]){re.escape(word)}(?![\w])", entries[folder]):
            missing.append("/".join(parts))
    assert not missing, f"README.md's layout section does not name {missing}"


def test_tests_import_their_helpers_as_a_package():
    """tests/ is a package: a helper is imported as tests.unit.builders, never by a bare name that
    works only because pytest put its folder on sys.path."""
    tests = ROOT.parents[1] / "tests"
    helpers = {path.stem for path in tests.rglob("*.py")} - {"__init__", "conftest"}
    bare = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            bare += [f"{path.relative_to(tests)}: {name}" for name in names if name.split(".")[0] in helpers]
    assert not bare, bare


def test_the_published_names_are_written_once():
    """Fund codes, header names and record names live in gongji.contract.wire; a module writing one
    as a literal again would drift from it unnoticed."""
    from gongji.contract import wire

    literals = {*(f'"{fund.code}"' for fund in wire.FUNDS), f'"{wire.ACCOUNT}"',
                *(f'"{name}"' for name in (wire.TYPE_HEADER, wire.ID_HEADER, wire.SERVICE_HEADER))}
    found = [f"{MODULES[m].relative_to(ROOT)}: {literal}" for m in MODULES if layer(m) != "contract"
             for literal in literals if literal in MODULES[m].read_text(encoding="utf-8")]
    assert not found, found
