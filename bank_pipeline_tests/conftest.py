"""Loads every fixture module in bank_pipeline_tests/fixtures (one per concern)."""

import pkgutil

from bank_pipeline_tests import fixtures

pytest_plugins = [
    f"{fixtures.__name__}.{m.name}" for m in sorted(pkgutil.iter_modules(fixtures.__path__), key=lambda m: m.name)
]
