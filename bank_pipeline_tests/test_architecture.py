"""The import contracts of `.importlinter` hold: no import cycle at any level of bank_pipeline, the
command line on top of the library, the simulator out of production paths. (`make lint` runs the
same check as `lint-imports`.)"""

from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

CONFIG = Path(__file__).resolve().parents[1] / ".importlinter"


def test_import_contracts_hold(capsys):
    code = lint_imports(config_filename=str(CONFIG), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert code == 0, report
    assert "3 kept, 0 broken" in report, report  # every contract was found and checked
