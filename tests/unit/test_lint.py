"""pyflakes over the product and its tests: an undefined name (a missing `import sys` once reached
main on a path only the CSV report takes) or an unused import fails here, not in front of a user."""

from pathlib import Path

from pyflakes.api import checkPath
from pyflakes.reporter import Reporter

ROOT = Path(__file__).resolve().parents[2]


class Collect(Reporter):
    def __init__(self):
        self.found: list[str] = []

    def unexpectedError(self, filename, message):
        self.found.append(f"{filename}: {message}")

    def syntaxError(self, filename, msg, lineno, offset, text):
        self.found.append(f"{filename}:{lineno}: {msg}")

    def flake(self, message):
        self.found.append(str(message))


def test_pyflakes_finds_nothing():
    reporter = Collect()
    for folder in ("services", "tests", "docs", "deploy"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            checkPath(str(path), reporter)
    assert reporter.found == []


def test_the_check_sees_an_undefined_name(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def f():\n    print(1, file=sys.stderr)\n")
    reporter = Collect()
    checkPath(str(broken), reporter)
    assert len(reporter.found) == 1 and "undefined name 'sys'" in reporter.found[0]
