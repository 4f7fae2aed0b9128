"""docs/PROMISES.md maps each README promise to the tests that would fail if it were false.

The table must stay true: every test it names exists (a renamed or deleted test fails here),
every row names at least one test or says plainly why it has none, and the README points at it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMISES = ROOT / "docs" / "PROMISES.md"
# `path/to/test_file.py::test_name` or `molecule/<scenario>/molecule.yml::<sequence step>`
REFERENCE = re.compile(r"`([\w./-]+)::(\w+)`")


def rows() -> list[tuple[str, str]]:
    """(promise, tests cell) for each row of the table (header and rule excluded)."""
    found = []
    for line in PROMISES.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 2 and cells[0] not in ("promise", "---"):
            found.append((cells[0], cells[1]))
    return found


def references() -> list[tuple[str, str]]:
    return sorted({ref for _, tests in rows() for ref in REFERENCE.findall(tests)})


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_the_table_has_promises():
    assert len(rows()) >= 40


def test_readme_points_at_the_promise_table():
    assert "docs/PROMISES.md" in (ROOT / "README.md").read_text()


def test_every_promise_names_a_test_or_says_why_not():
    bare = [
        promise
        for promise, tests in rows()
        if not REFERENCE.search(tests) and not tests.lower().startswith("not tested:")
    ]
    assert bare == []


@pytest.mark.parametrize("path,name", references(), ids=lambda value: str(value))
def test_named_test_exists(path, name):
    file = ROOT / path
    assert file.is_file(), f"{path} does not exist"
    if file.name == "molecule.yml":
        sequence = yaml.safe_load(file.read_text())["scenario"]["test_sequence"]
        assert name in sequence, f"{path} runs no {name} step"
    else:
        assert name in defined_tests(file), f"{path} defines no {name}"
