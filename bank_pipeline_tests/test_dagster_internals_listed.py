"""Every private Dagster module the application or its instance files use is listed, with what it
is for, in docs/dagster-internals.md: what a Dagster upgrade puts at risk is never a surprise."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRIVATE = re.compile(r"\bdagster(?:_postgres)?\._[\w.]+")


def private_modules_used() -> dict[str, set[str]]:
    """Private module paths (`dagster._core…`) named in bank_pipeline/ and the dagster.yaml files."""
    files = [*(REPO / "bank_pipeline").rglob("*.py"), REPO / "dagster.yaml", *(REPO / "deploy").rglob("dagster.yaml")]
    used: dict[str, set[str]] = {}
    for path in files:
        for name in PRIVATE.findall(path.read_text(encoding="utf-8")):
            used.setdefault(name.rstrip("."), set()).add(str(path.relative_to(REPO)))
    return used


def test_every_private_dagster_module_in_use_is_listed_in_the_doc():
    used = private_modules_used()
    assert "dagster._core.storage.event_log" in used  # the storages' own imports are found
    doc = (REPO / "docs" / "dagster-internals.md").read_text(encoding="utf-8")
    unlisted = {name: sorted(paths) for name, paths in used.items() if name not in doc}
    assert unlisted == {}, "say in docs/dagster-internals.md what each is for"
