"""The offline enricher on labelled sets, before and after: accuracy, unknown rate, calibration,
per-transaction time and the package's size.

"Before" is the enricher of another revision (default `ef52bd3`, the offline enricher without the
brand table), exported with `git archive` into a temporary directory; "after" is this checkout.
Both are scored by the same code in a child process (`_SCORER`, on that tree's PYTHONPATH), so
they see the same rows. Sets (bank_pipeline_tests/data):
- eval_handwritten_world.csv: written by hand from general knowledge of merchants and statement
  formats, mostly US, Canadian, Australian and continental ones, never from the brand table or
  the rules (provenance: eval_handwritten_world_README.md);
- eval_independent.csv, split into its UK rows and the rest (its own README says how it was made);
- uk_descriptions_labelled.csv and dev_international_examples.csv: written with the knowledge base,
  so optimistic.
Calibration: rows grouped by the confidence the enricher gave; each group's share right beside its
mean confidence, and the expected calibration error (ECE, weighted mean gap). "unknown" counts as
wrong. Time: mean per row over every set, the first time each description is seen (the enricher
keeps a small cache of payee words) and again over three more passes; the knowledge base's load
is printed apart. Size: bytes of the package's files (no bytecode).

`BANK_PIPELINE_BENCH_BEFORE=<rev>` picks another "before" revision.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "bank_pipeline_tests" / "data"
BEFORE = os.environ.get("BANK_PIPELINE_BENCH_BEFORE", "ef52bd3")
BINS = (0.0, 0.3, 0.5, 0.7, 0.85, 1.01)
MAX_MS = 2.0
MAX_GROWTH_MB = 30.0

_SCORER = r"""
import json, sys, time
from decimal import Decimal
started = time.perf_counter()
from bank_pipeline.enrich.offline import OfflineModel
from bank_pipeline.enrich.types import TxnInput
model = OfflineModel()
load = time.perf_counter() - started
sets = json.load(sys.stdin)
def txn(i, r):
    return TxnInput(id=i, description=r["description"], amount=Decimal(r["amount"]), direction=r["direction"],
                    merchant_name=r.get("merchant_name"), transaction_category=r.get("transaction_category"),
                    transaction_classification=tuple(r.get("classification") or ()))
inputs = [txn(i, r) for rows in sets.values() for i, r in enumerate(rows)]
t0 = time.perf_counter()
out = {name: [[e.category, e.confidence] for e in (model.classify(txn(i, r)) for i, r in enumerate(rows))]
       for name, rows in sets.items()}
first_ms = (time.perf_counter() - t0) / len(inputs) * 1000
passes = 3
t0 = time.perf_counter()
for _ in range(passes):
    for t in inputs:
        model.classify(t)
again_ms = (time.perf_counter() - t0) / (passes * len(inputs)) * 1000
json.dump({"answers": out, "first_ms": first_ms, "again_ms": again_ms, "load_s": load, "model": model.name},
          sys.stdout)
"""


def read_set(path: Path) -> list[dict]:
    """A labelled CSV → rows: description, amount, direction, category, region, bank signals."""
    with path.open(encoding="utf-8") as handle:
        raw = list(csv.DictReader(handle))
    rows = []
    for r in raw:
        amount = str(r.get("amount") or "0").replace(",", "")
        kind = (r.get("direction") or r.get("transaction_type") or "").strip().lower()
        direction = "credit" if kind == "credit" else "debit" if kind == "debit" else None
        classification = (r.get("transaction_classification") or "").replace(">", "|")
        rows.append(
            {
                "description": r.get("description") or "",
                "amount": amount,
                "direction": direction or ("credit" if float(amount) > 0 else "debit"),
                "merchant_name": r.get("merchant_name") or None,
                "transaction_category": r.get("transaction_category") or None,
                "classification": [p.strip() for p in classification.split("|") if p.strip()],
                "category": (r.get("category") or r.get("expected_category") or "").strip(),
                "region": (r.get("region") or "").strip(),
            }
        )
    return rows


def labelled_sets() -> dict[str, list[dict]]:
    independent = read_set(DATA / "eval_independent.csv")
    return {
        "handwritten world (independent)": read_set(DATA / "eval_handwritten_world.csv"),
        "independent set, UK rows": [r for r in independent if r["region"] == "UK"],
        "independent set, rows from elsewhere": [r for r in independent if r["region"] != "UK"],
        "UK set written with the knowledge base (optimistic)": read_set(
            DATA / "uk_descriptions_labelled.csv"
        ),
        "development examples abroad (optimistic)": read_set(DATA / "dev_international_examples.csv"),
    }


def calibration(pairs: list[tuple[float, bool]]) -> tuple[float, list[tuple[float, float, float, int]]]:
    """(ECE, [(low, mean confidence, share right, rows)] per non-empty confidence bin)."""
    table = []
    ece = 0.0
    for low, high in zip(BINS, BINS[1:], strict=False):
        cell = [(c, ok) for c, ok in pairs if low <= c < high]
        if not cell:
            continue
        mean = sum(c for c, _ in cell) / len(cell)
        right = sum(ok for _, ok in cell) / len(cell)
        ece += abs(mean - right) * len(cell) / len(pairs)
        table.append((low, mean, right, len(cell)))
    return ece, table


def score(rows: list[dict], answers: list[list]) -> dict:
    pairs = [(float(conf), cat == r["category"]) for r, (cat, conf) in zip(rows, answers, strict=True)]
    ece, table = calibration(pairs)
    return {
        "n": len(rows),
        "accuracy": sum(ok for _, ok in pairs) / len(rows),
        "unknown": sum(cat == "unknown" for cat, _ in answers) / len(rows),
        "ece": ece,
        "table": table,
    }


def package_bytes(tree: Path) -> int:
    return sum(
        p.stat().st_size
        for p in (tree / "bank_pipeline").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def _export(revision: str) -> Path:
    target = Path(tempfile.mkdtemp(prefix="bench-enrich-before-"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "bank_pipeline"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def run_tree(tree: Path, sets: dict[str, list[dict]]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", _SCORER],
        input=json.dumps(sets),
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,
        check=True,
    )
    return json.loads(done.stdout)


def _line(s: dict) -> str:
    return f"accuracy {s['accuracy']:.1%}, unknown {s['unknown']:.1%}, ECE {s['ece']:.3f}"


def run(args) -> None:
    sets = labelled_sets()
    before_tree = _export(BEFORE)
    before = run_tree(before_tree, sets)
    after = run_tree(ROOT, sets)
    print(
        f"offline enricher, before = {BEFORE} ({before['model']}), after = this checkout ({after['model']})"
    )
    for name, rows in sets.items():
        b = score(rows, before["answers"][name])
        a = score(rows, after["answers"][name])
        print(f"{name} ({len(rows)} rows): before {_line(b)} → after {_line(a)}")
        print(
            "  after, calibration (confidence bin: mean confidence → share right, rows): "
            + "; ".join(f"≥{low:.2f}: {mean:.2f} → {right:.0%} ({n})" for low, mean, right, n in a["table"])
        )
    n = sum(len(r) for r in sets.values())
    print(
        f"time per transaction, first sight of each of {n} descriptions: before {before['first_ms']:.3f} ms → "
        f"after {after['first_ms']:.3f} ms (target ≤ {MAX_MS:g} ms); seen again (3 passes): before "
        f"{before['again_ms']:.3f} ms → after {after['again_ms']:.3f} ms; knowledge base load and imports "
        f"before {before['load_s']:.2f} s → after {after['load_s']:.2f} s"
    )
    size_before, size_after = package_bytes(before_tree), package_bytes(ROOT)
    growth = (size_after - size_before) / 1e6
    print(
        f"package files (bank_pipeline/, no bytecode): before {size_before / 1e6:.2f} MB → after "
        f"{size_after / 1e6:.2f} MB, growth {growth:.2f} MB (target ≤ {MAX_GROWTH_MB:g} MB)"
    )
