"""bank_pipeline: TrueLayer transactions into a de-duplicated, categorised ledger, on Dagster.

`dagster job execute -m bank_pipeline` and `dg dev -m bank_pipeline` find `defs` here. It is
loaded lazily (PEP 562) so the CLI, the simulator and plain library use don't import Dagster.
"""

__all__ = ["defs"]


def __getattr__(name: str):
    if name == "defs":
        from bank_pipeline.definitions import defs

        return defs
    raise AttributeError(f"module 'bank_pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + ["defs"])
