"""``curated_samples`` and ``curation_ledger``: the policy applied, with a conservation check."""

import base64

from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetOut,
    Config,
    MetadataValue,
    Output,
    multi_asset,
)

from assets.checks import check_result, check_spec
from assets.raw_samples import DATASETS
from robust_data.arrays import class_names, num_classes
from robust_data.checks import check_class_balance, check_kept_share, check_ledger
from robust_data.curation import Curation, CurationPolicy, class_count_chart, select_curated


class CurationConfig(Config):
    """The curation policy (see robust_data.curation.CurationPolicy)."""

    require_correct: bool = True
    require_robust: bool = True
    min_steps_to_flip: int = 0  # > 0: keep points that flip at this try or later instead
    drop_label_issues: bool = True
    drop_outliers: bool = True
    dedupe: bool = True
    quota_mode: str = "smallest"  # fixed, smallest, cap or none
    balance_tolerance: float = 0.1  # checked: 1 - smallest/largest kept class count <= this
    per_class: int = 1500  # for fixed and cap (the paper kept 1,500 per class)
    seed: int = 0


def _metadata(result: Curation, names: list[str]) -> dict[str, MetadataValue]:
    chart = class_count_chart(result.ledger, dict(enumerate(names)))
    reasons = ["| outcome | samples |", "|---|---:|"]
    reasons += [f"| {r} | {n:,} |" for r, n in result.reason_counts().items()]
    meta = {
        "dagster/row_count": MetadataValue.int(result.curated.num_rows),
        "kept_share": MetadataValue.float(round(result.kept_share(), 4)),
        "reasons": MetadataValue.md("\n".join(reasons)),
        "per_class": MetadataValue.md(
            f"![per class](data:image/png;base64,{base64.b64encode(chart).decode()})"
        ),
        "shortfalls": MetadataValue.json(
            {names[k]: {"quota": q, "kept": n} for k, (q, n) in result.shortfalls.items()}
        ),
    }
    return meta


@multi_asset(
    outs={
        "curated_samples": AssetOut(
            description="The kept training samples (samples-table schema).",
            kinds={"parquet"},
        ),
        "curation_ledger": AssetOut(
            description="One row per input training sample: kept, and the first reason dropped.",
            kinds={"parquet"},
        ),
    },
    ins={
        "raw_samples": AssetIn(),
        "rpr_scores": AssetIn(),
        "label_quality": AssetIn(),
    },
    check_specs=[
        check_spec(
            "curation_ledger",
            "conservation",
            "Ledger rows equal input rows; kept rows equal the curated table; drops have reasons.",
        ),
        check_spec(
            "curation_ledger",
            "kept_share",
            "Guard (warning): curation kept at least half of the training samples.",
            blocking=False,
        ),
        check_spec(
            "curated_samples",
            "class_balance",
            "Every class kept, and 1 - smallest/largest class count within the policy's tolerance.",
        ),
    ],
    partitions_def=DATASETS,
    group_name="curation",
)
def curation_assets(
    context: AssetExecutionContext, config: CurationConfig, raw_samples, rpr_scores, label_quality
):
    """Apply the policy (one core call: :func:`robust_data.curation.select_curated`)."""
    import pyarrow.compute as pc

    train = raw_samples.filter(pc.equal(raw_samples.column("split"), "train"))
    settings = config.model_dump()
    settings["min_steps_to_flip"] = settings["min_steps_to_flip"] or None
    tolerance = settings.pop("balance_tolerance")
    result = select_curated(train, rpr_scores, label_quality, CurationPolicy(**settings))
    for label, (quota, kept) in result.shortfalls.items():
        context.log.warning(f"class {label} kept {kept} of its quota {quota}")
    guard = check_kept_share(result.ledger)
    for problem in guard.problems:
        context.log.warning(problem)
    yield Output(
        result.curated,
        output_name="curated_samples",
        metadata=_metadata(result, class_names(raw_samples)),
    )
    yield Output(
        result.ledger,
        output_name="curation_ledger",
        metadata={
            "dagster/row_count": result.ledger.num_rows,
            "guard": MetadataValue.text(guard.summary()),
        },
    )
    conservation = check_ledger(result.ledger, train.num_rows, result.curated.num_rows)
    yield check_result("curation_ledger", "conservation", conservation)
    yield check_result("curation_ledger", "kept_share", guard, warning=True)
    balance = check_class_balance(result.curated, num_classes(raw_samples), tolerance)
    yield check_result("curated_samples", "class_balance", balance)
