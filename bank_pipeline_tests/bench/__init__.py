"""Benchmarks that print figures (never timed unit tests).

`python -m bank_pipeline_tests.bench [SECTION ...]` runs every section module in this package
(or the named ones). A section module exposes `run(args) -> None` and prints its own figures,
each as ratios against a baseline measured in the same process where a target applies.
"""
