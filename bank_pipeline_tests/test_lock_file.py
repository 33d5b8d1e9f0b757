"""requirements.lock (what `make install` and CI install) pins every dependency setup.py declares,
within setup.py's ranges: a dependency added or a range moved without `make lock` fails here."""

from __future__ import annotations

import ast
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def _declared() -> list[Requirement]:
    """install_requires and the `test` extra, read from setup.py without running it."""
    call = next(
        node
        for node in ast.walk(ast.parse((REPO / "setup.py").read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup"
    )
    keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("install_requires", "extras_require")}
    return [Requirement(r) for r in keywords["install_requires"] + keywords["extras_require"]["test"]]


def _pinned() -> dict[str, Version]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        line = line.split(";")[0].strip()
        if line and not line.startswith("#") and "==" in line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_the_lock_pins_every_declared_dependency_within_its_range():
    pins = _pinned()
    declared = _declared()
    assert len(declared) > 10
    missing = [str(r) for r in declared if canonicalize_name(r.name) not in pins]
    outside = {
        str(r): str(pins[canonicalize_name(r.name)])
        for r in declared
        if canonicalize_name(r.name) in pins and not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)
    }
    assert (missing, outside) == ([], {}), "run `make lock` (docs/running.md, 'Exact versions')"
