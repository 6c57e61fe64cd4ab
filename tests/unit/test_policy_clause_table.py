"""docs/policy.md "Clause by clause" stays honest (issue 23): every clause of both source policies has a row,
every YAML key path it cites exists in the shipped file, and every test it cites exists. The same for the two
example policies of issue 28 (FCA, HIPAA), whose rows are the clauses their YAML comments cite."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "policy.md"
SHIPPED = {"A": REPO / "examples" / "policies" / "policy-a.yaml",
           "B": REPO / "examples" / "policies" / "policy-b.yaml",
           "FCA": REPO / "examples" / "policies" / "policy-finance-fca.yaml",
           "HIPAA": REPO / "examples" / "policies" / "policy-health-hipaa.yaml"}

# The clause ids of REQUIREMENTS.md (policy A has no A2).
CLAUSES = {"A": ["A1", *(f"A{i}" for i in range(3, 16))],
           "B": [f"B{i}" for i in range(1, 14)],
           # The examples' rows: the clauses their YAML comments cite, in the table's order.
           "FCA": ["COBS 11.8.5", "COBS 11.8.8", "COBS 11.8.10", "COBS 11.8.12", "SYSC 10A", "DISP 1.3",
                   "UK GDPR Art. 12(3)", "SUP 15.3"],
           "HIPAA": ["164.502(b)", "164.502(g)", "164.524(b)(2)", "164.530(a)", "164.404(b)", "164.530(j)(2)",
                     "164.312(a)(1)", "164.530(b)", "Cal. Penal Code 632", "18 U.S.C. 2511(2)(d)",
                     "site choice: callers abroad"]}

COLUMNS = ["clause", "what the text says (short)", "rule in the YAML", "test that proves it"]
NO_KEY = "(product behaviour, no policy key)"
NO_TEST = "no test yet"
TEST_REF = re.compile(r"(tests/[\w/]+\.py)::(\w+)(?:\[[^\]]*\])?")
KEY_PATH = re.compile(r"`([^`]+)`")


def _section(text: str) -> str:
    start = text.index("\n## Clause by clause\n")
    rest = text[start + 1:]
    end = rest.find("\n## ", 1)
    return rest if end < 0 else rest[:end]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def parse_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """The rows of the section's tables ("Policy A", "Policy B", "Example FCA", "Example HIPAA"), as column -> cell."""
    tables: dict[str, list[dict[str, str]]] = {}
    policy: str | None = None
    header: list[str] | None = None
    for line in _section(text).splitlines():
        heading = re.match(r"### (?:Policy ([AB])|Example (FCA|HIPAA))\b", line)
        if heading:
            policy, header = heading.group(1) or heading.group(2), None
            tables.setdefault(policy, [])
            continue
        if policy is None or not line.startswith("|"):
            continue
        cells = _cells(line)
        if header is None:
            header = cells
            assert header == COLUMNS, f"policy {policy} table has columns {header}"
            continue
        if set("".join(cells)) <= set("-: "):
            continue  # the separator row
        assert len(cells) == len(header), f"policy {policy}: row with {len(cells)} cells: {line}"
        tables[policy].append(dict(zip(header, cells, strict=True)))
    return tables


def walk(document: Any, path: str) -> bool:
    node = document
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def defines_test(file: str, name: str) -> bool:
    path = REPO / file
    if not path.is_file():
        return False
    pattern = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", re.MULTILINE)
    return bool(pattern.search(path.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def tables() -> dict[str, list[dict[str, str]]]:
    return parse_tables(DOC.read_text(encoding="utf-8"))


@pytest.mark.parametrize("policy", sorted(CLAUSES))
def test_every_clause_has_exactly_one_row(tables: dict[str, list[dict[str, str]]], policy: str) -> None:
    ids = [row["clause"] for row in tables.get(policy, [])]
    missing = [c for c in CLAUSES[policy] if c not in ids]
    unknown = [c for c in ids if c not in CLAUSES[policy]]
    twice = sorted({c for c in ids if ids.count(c) > 1})
    assert not missing, f"policy {policy}: no row for {missing}"
    assert not unknown, f"policy {policy}: rows for clauses the requirements do not have: {unknown}"
    assert not twice, f"policy {policy}: more than one row for {twice}"
    assert ids == CLAUSES[policy], f"policy {policy}: rows out of order: {ids}"


@pytest.mark.parametrize("policy", sorted(CLAUSES))
def test_every_cited_key_path_exists_in_the_shipped_file(tables: dict[str, list[dict[str, str]]],
                                                          policy: str) -> None:
    document = yaml.safe_load(SHIPPED[policy].read_text(encoding="utf-8"))
    wrong: list[str] = []
    for row in tables[policy]:
        cell = row["rule in the YAML"]
        paths = KEY_PATH.findall(cell)
        if not paths and NO_KEY not in cell:
            wrong.append(f"{row['clause']}: names no key path and does not say {NO_KEY!r}")
        wrong += [f"{row['clause']}: {p!r} is not in {SHIPPED[policy].name}" for p in paths if not walk(document, p)]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("policy", sorted(CLAUSES))
def test_every_cited_test_exists(tables: dict[str, list[dict[str, str]]], policy: str) -> None:
    wrong: list[str] = []
    for row in tables[policy]:
        cell = row["test that proves it"]
        refs = TEST_REF.findall(cell)
        if not refs and not cell.startswith(NO_TEST):
            wrong.append(f"{row['clause']}: cites no test and does not say {NO_TEST!r}")
        wrong += [f"{row['clause']}: {file}::{name} does not exist" for file, name in refs
                  if not defines_test(file, name)]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("policy", ["FCA", "HIPAA"])
def test_every_clause_an_example_policy_cites_in_its_comments_has_a_row(policy: str) -> None:
    text = SHIPPED[policy].read_text(encoding="utf-8")
    for clause in CLAUSES[policy]:
        cited = clause.removeprefix("site choice: callers ")  # the row for a site choice names what it is about
        assert cited in text, f"{policy}: {clause!r} is not cited in {SHIPPED[policy].name}"


def test_the_checks_catch_a_missing_row_a_bad_key_and_a_misspelt_test() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = {p: {r["clause"]: r for r in t} for p, t in parse_tables(text).items()}
    a7 = next(line for line in text.splitlines() if line.startswith("| A7 |"))
    assert "A7" not in {r["clause"] for r in parse_tables(text.replace(a7 + "\n", ""))["A"]}
    assert not walk(yaml.safe_load(SHIPPED["B"].read_text(encoding="utf-8")), "purposes.spot_check.reachs")
    file, name = TEST_REF.findall(rows["B"]["B8"]["test that proves it"])[0]
    assert defines_test(file, name) and not defines_test(file, name + "x")
