"""Run the benchmark sections: `python -m bank_pipeline_tests.bench [--quick] [SECTION ...]`."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time

from bank_pipeline_tests import bench


def main(argv: list[str] | None = None) -> int:
    sections = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))
    parser = argparse.ArgumentParser(prog="python -m bank_pipeline_tests.bench")
    parser.add_argument("sections", nargs="*", choices=sections + [[]], help=f"default: all of {sections}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    for name in args.sections or sections:
        module = importlib.import_module(f"{bench.__name__}.{name}")
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        module.run(args)
        print(f"--- {name}: {time.perf_counter() - started:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
