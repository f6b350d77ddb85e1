"""Every row of docs/troubleshooting.md names tests that exist, so the table cannot drift from them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "troubleshooting.md"


def rows() -> list[str]:
    return [line for line in DOC.read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| ---") and line.split("|")[-2].strip() != "test"]


def test_every_row_names_tests_that_exist():
    checked = 0
    for row in rows():
        cell = row.split("|")[-2]
        current = None
        for path, name in re.findall(r"`(?:(tests/[\w/]+\.py)::)?(test_\w+)`", cell) or [(None, None)]:
            assert name, f"a row without a test: {row}"
            current = path or current
            assert current, f"{name} is given without its file: {row}"
            source = (ROOT / current).read_text()
            assert re.search(rf"^def {name}\(", source, re.M), f"{current}::{name} does not exist"
            checked += 1
    assert checked >= 30
