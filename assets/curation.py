"""``curated_samples`` and ``curation_ledger``: the policy applied, with a conservation check."""

from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetOut,
    AssetSpec,
    MetadataValue,
    Output,
    multi_asset,
)

from assets.checks import check_result, check_spec
from assets.config import core_config, set_fields
from assets.raw_samples import DATASETS
from assets.resources import HomeResource
from robust_data.arrays import class_names, num_classes
from robust_data.checks import (
    check_class_balance,
    check_kept_share,
    check_ledger,
    split_rows,
)
from robust_data.curation import Curation, CurationPolicy, class_count_chart
from robust_data.markdown import count_table, inline_png
from robust_data.policies import DEFAULT_PRESET, apply_preset, customized
from robust_data.reviews import load_reviews
from robust_data.schema import read_params

CurationConfig = core_config(
    CurationPolicy,
    "CurationConfig",
    "A curation preset (robust_data.policies.PRESETS), optionally with policy fields changed "
    "(robust_data.curation.CurationPolicy); unset fields take the preset's values.",
    __name__,
    unset="the preset's value",
    preset=(str, DEFAULT_PRESET, "paper, clean or focus (see README, Does curation help?)"),
    balance_tolerance=(
        float | None,
        None,
        "Checked: 1 - smallest/largest kept class count <= this (unset: 0.1 when a quota drops "
        "samples for balance, else 1: class weights balance instead)",
    ),
)


#: Human decisions (robust_data.reviews), written by `robust-data browse` and `review import`,
#: never by a run: an external asset, shown in the lineage as an input of curation.
reviews = AssetSpec(
    "reviews",
    partitions_def=DATASETS,
    group_name="curation",
    kinds={"parquet"},
    description=(
        "Keep / drop / relabel decisions made in `robust-data browse` or imported from CSV, one "
        "row per decision (the latest per sample wins). Curation honours them: see the "
        "ledger's review, overridden and new_label columns."
    ),
)


def _metadata(result: Curation, names: list[str]) -> dict[str, MetadataValue]:
    chart = class_count_chart(result.ledger, dict(enumerate(names)))
    reasons = count_table(result.reason_counts(), "outcome", "samples")
    meta = {
        "dagster/row_count": MetadataValue.int(result.curated.num_rows),
        "preset": MetadataValue.text(read_params(result.ledger.schema)["preset"]),
        "kept_share": MetadataValue.float(round(result.kept_share(), 4)),
        "reasons": MetadataValue.md(reasons),
        "reviews_applied": MetadataValue.int(read_params(result.ledger.schema).get("reviews", 0)),
        "per_class": MetadataValue.md(inline_png(chart, "per class")),
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
    deps=[reviews],
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
    context: AssetExecutionContext,
    config: CurationConfig,
    home: HomeResource,
    raw_samples,
    rpr_scores,
    label_quality,
):
    """Apply the policy, then the human reviews (one core call: :func:`apply_preset`)."""
    chosen = customized(config.preset, **set_fields(config, CurationPolicy))
    tolerance = config.balance_tolerance
    if tolerance is None:
        tolerance = 1.0 if chosen.policy.quota_mode == "none" else 0.1
    reviews = load_reviews(home.store(), context.partition_key)
    result = apply_preset(raw_samples, rpr_scores, label_quality, chosen, reviews)
    if reviews.num_rows:
        applied = read_params(result.ledger.schema)["reviews"]
        context.log.info(f"{applied} reviewed samples: their latest decisions override the rules")
    context.log.info(f"preset {chosen.name}: {chosen.description}")
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
            "reason_counts": MetadataValue.json(result.reason_counts()),
            "guard": MetadataValue.text(guard.summary()),
        },
    )
    train_rows = split_rows(raw_samples, "train")
    conservation = check_ledger(result.ledger, train_rows, result.curated.num_rows)
    yield check_result("curation_ledger", "conservation", conservation)
    yield check_result("curation_ledger", "kept_share", guard, warning=True)
    balance = check_class_balance(result.curated, num_classes(raw_samples), tolerance)
    yield check_result("curated_samples", "class_balance", balance)
