"""``curated_samples`` and ``curation_ledger``: the policy applied, with a conservation check."""

from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetOut,
    AssetSpec,
    MetadataValue,
    TableMetadataValue,
    multi_asset,
)
from pydantic import Field

from assets.checks import check_result, check_spec
from assets.config import CoreConfig, set_fields
from assets.metadata import count_table, records_table, summary_metadata, table_definition
from assets.partitions import DATASETS
from assets.resources import HomeResource
from assets.versions import versioned
from robust_data.curation.ledger import (
    LEDGER_SCHEMA,
    MAX_CLASS_LOSS,
    check_class_loss,
    check_kept_share,
    check_ledger,
    class_count_chart,
)
from robust_data.curation.policy import BALANCE_TOLERANCE, Curation, CurationPolicy
from robust_data.curation.presets import DEFAULT_PRESET, PRESETS, apply_preset, customized
from robust_data.curation.reviews import REVIEWS_SCHEMA, load_reviews
from robust_data.ingest.arrays import class_names, num_classes
from robust_data.present.markdown import inline_png
from robust_data.store.checks import check_class_balance, split_rows
from robust_data.store.schema import SAMPLES_SCHEMA, read_params


class CurationConfig(CoreConfig, core=CurationPolicy, unset="the preset's value"):
    """A curation preset (robust_data.curation.presets.PRESETS), optionally with policy fields
    changed (robust_data.curation.policy.CurationPolicy); unset fields take the preset's
    values."""

    preset: str = Field(
        default=DEFAULT_PRESET,
        description=f"{', '.join(PRESETS)} (see README, Does curation help?)",
    )
    class_focus: int | None = Field(
        default=None,
        description="Class quotas: extra variant copies per sample for the most fragile class, "
        "proportionally fewer for the others, spread at random within each class (unset: the "
        "preset's: 2 for mined, 0 for the others)",
    )
    balance_tolerance: float | None = Field(
        default=None,
        description="Checked: 1 - smallest/largest kept class count <= this (unset: "
        f"{BALANCE_TOLERANCE:g} when a quota drops samples for balance, else 1: class weights "
        "balance instead)",
    )


#: Human decisions (robust_data.curation.reviews), written by `robust-data browse` and
#: `review import`,
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
    metadata=table_definition(REVIEWS_SCHEMA),
)


def _reasons(result: Curation) -> TableMetadataValue:
    """Training samples per outcome: kept, or the first rule that dropped them."""
    about = "Training samples with this outcome (the first rule they failed)"
    return count_table(result.reason_counts(), "outcome", "samples", about)


def _class_counts(result: Curation, names: list[str]) -> TableMetadataValue:
    """Per class: training samples before and after curation (a small kept share is bad)."""
    before, after = result.class_counts()
    rows = [
        {
            "class": names[k] if k < len(names) else str(k),
            "before": before[k],
            "after": after.get(k, 0),
            "kept_share": round(after.get(k, 0) / before[k], 4) if before[k] else 0.0,
        }
        for k in sorted(before)
    ]
    columns = {
        "class": "The class (relabelled samples count under their new label after curation)",
        "before": "Training samples of the class",
        "after": "Of them, kept",
        "kept_share": "after / before; near 0 empties the class",
    }
    return records_table(rows, columns)


def _shortfalls(result: Curation, names: list[str]) -> TableMetadataValue:
    """Classes that kept fewer samples than their quota (none is good)."""
    rows = [
        {"class": names[k], "quota": quota, "kept": kept}
        for k, (quota, kept) in result.shortfalls.items()
    ]
    columns = {
        "class": "A class below its quota",
        "quota": "Samples the policy asked for",
        "kept": "Samples it kept",
    }
    return records_table(rows, columns)


def _metadata(result: Curation, names: list[str]) -> dict[str, MetadataValue]:
    """Key numbers first, then the per-class and per-reason tables, then the chart."""
    params = read_params(result.ledger.schema)
    chart = class_count_chart(result.ledger, dict(enumerate(names)))
    return {
        "kept_share": MetadataValue.float(round(result.kept_share(), 4)),
        "dagster/row_count": MetadataValue.int(result.curated.num_rows),
        "preset": MetadataValue.text(params["preset"]),
        "reviews_applied": MetadataValue.int(params.get("reviews", 0)),
        "shortfall_classes": MetadataValue.int(len(result.shortfalls)),
        "class_counts": _class_counts(result, names),
        "reasons": _reasons(result),
        "shortfalls": _shortfalls(result, names),
        "per_class": MetadataValue.md(inline_png(chart, "per class")),
    }


def _ledger_metadata(result: Curation, guard: str) -> dict[str, MetadataValue]:
    """The summary (kept and dropped counts, counts per reason), the guard, the reasons table."""
    return {
        **summary_metadata(result.summary()),
        "guard": MetadataValue.text(guard),
        "reasons": _reasons(result),
    }


@multi_asset(
    outs={
        "curated_samples": AssetOut(
            description="The kept training samples, in the raw_samples schema: one row per kept "
            "image. A low kept_share, or a class in shortfalls or with a small kept share in "
            "class_counts, means the policy dropped too much.",
            kinds={"parquet"},
            metadata=table_definition(SAMPLES_SCHEMA),
        ),
        "curation_ledger": AssetOut(
            description="Why each training sample was kept or dropped: one row per input "
            "training sample. reason is the first rule it failed (null = kept); review and "
            "overridden show the human decisions that changed the outcome.",
            kinds={"parquet"},
            metadata=table_definition(LEDGER_SCHEMA),
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
            "curation_ledger",
            "class_loss",
            f"Guard (warning): the rules dropped at most {MAX_CLASS_LOSS:.0%} of any class's "
            "training samples (over_quota and review drops excluded).",
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
    chosen = customized(config.preset, class_focus=config.class_focus, **set_fields(config))
    tolerance = config.balance_tolerance
    if tolerance is None:
        tolerance = chosen.policy.balance_tolerance()
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
    loss = check_class_loss(result.ledger, names=dict(enumerate(class_names(raw_samples))))
    for problem in loss.problems:
        context.log.warning(problem)
    yield versioned(
        result.curated,
        output_name="curated_samples",
        metadata=_metadata(result, class_names(raw_samples)),
    )
    yield versioned(
        result.ledger,
        output_name="curation_ledger",
        metadata=_ledger_metadata(result, guard.summary()),
    )
    train_rows = split_rows(raw_samples, "train")
    conservation = check_ledger(result.ledger, train_rows, result.curated.num_rows)
    yield check_result("curation_ledger", "conservation", conservation)
    yield check_result("curation_ledger", "kept_share", guard, warning=True)
    yield check_result("curation_ledger", "class_loss", loss, warning=True)
    balance = check_class_balance(result.curated, num_classes(raw_samples), tolerance)
    yield check_result("curated_samples", "class_balance", balance)
