"""Asset checks: each asset runs its table's core check (beside the table's schema) on what it made.

A failed blocking check stops the run before downstream assets consume the table; the table
itself is stored (and the check's problems are in the UI) so that it can be inspected.

Every check is partitioned like its asset (one partition per dataset), so each evaluation is
recorded for the dataset it checked: the UI's Checks tab has a Partitions view with each
dataset's latest result, and a failure in one dataset does not hide another's pass.
"""

import warnings

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey, PreviewWarning

from assets.partitions import DATASETS
from robust_data.present.summary import rounded
from robust_data.store.checks import CheckOutcome


def check_spec(asset: str, name: str, description: str, blocking: bool = True) -> AssetCheckSpec:
    """A (blocking by default) check of ``asset``, partitioned by dataset like every asset.

    Partitioned checks are a preview in Dagster 1.13; the warning that says so is silenced
    here, for these specs only.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=PreviewWarning, message=".*AssetCheckSpec")
        return AssetCheckSpec(
            name,
            asset=asset,
            blocking=blocking,
            description=description,
            partitions_def=DATASETS,
        )


def check_result(
    asset: str, name: str, outcome: CheckOutcome, warning: bool = False
) -> AssetCheckResult:
    """The Dagster result of a core check outcome, its problems and figures as metadata.

    ``warning``: a failure is shown as a warning (for the non-blocking guards), not an error.
    """
    return AssetCheckResult(
        check_name=name,
        asset_key=AssetKey(asset),
        passed=outcome.passed,
        severity=AssetCheckSeverity.WARN if warning else AssetCheckSeverity.ERROR,
        description=outcome.summary(),
        metadata={**rounded(outcome.metadata), "problems": len(outcome.problems)},
    )
