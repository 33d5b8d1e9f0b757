"""A bench-only code location: five trivial assets shaped like the transaction assets.

Same partitions (account × day, the same `accounts` dynamic partitions), the same backfill
policy and the same executor as `bank_pipeline`'s assets, read from them so the floor follows
any change there; each step only returns metadata. A backfill over these is what Dagster
itself costs (daemon ticks, run launch, planning, event writes): the `ui_backfill` bench's floor.
"""

import dagster as dg

from bank_pipeline import definitions as project  # a module: one Definitions object here
from bank_pipeline.orchestration.assets import transaction_assets

PREFIX = "trivial"
GROUP = "trivial_transactions"


def _trivial(project_asset: dg.AssetsDefinition, upstream: dg.AssetsDefinition | None) -> dg.AssetsDefinition:
    name = project_asset.key.path[-1]

    @dg.asset(
        name=name,
        key_prefix=[PREFIX],
        partitions_def=project_asset.partitions_def,
        backfill_policy=project_asset.backfill_policy,
        group_name=GROUP,
        deps=[upstream] if upstream is not None else None,
    )
    def trivial(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"partitions": len(context.partition_keys)})

    return trivial


def _chain() -> list[dg.AssetsDefinition]:
    out: list[dg.AssetsDefinition] = []
    for project_asset in transaction_assets:
        out.append(_trivial(project_asset, out[-1] if out else None))
    return out


trivial_assets = _chain()
defs = dg.Definitions(assets=trivial_assets, executor=project.defs.executor)
