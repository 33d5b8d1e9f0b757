"""The import contracts of `.importlinter` hold: no import cycle at any level of bank_pipeline, the
command line on top of the library, the simulator out of production paths. (`make lint` runs the
same check as `lint-imports`.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    # `.importlinter` is read from the working directory. In a child process: import-linter
    # reconfigures logging (disabling existing loggers), which would silence the log assertions
    # of later tests in this process.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
            "--no-cache",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "3 kept, 0 broken" in report, report  # every contract was found and checked
