"""Asset checks: each asset runs its table's core check (beside the table's schema) on what it made.

A failed blocking check stops the run before downstream assets consume the table; the table
itself is stored (and the check's problems are in the UI) so that it can be inspected.
"""

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey

from robust_data.store.checks import CheckOutcome


def check_spec(asset: str, name: str, description: str, blocking: bool = True) -> AssetCheckSpec:
    """A (blocking by default) check of ``asset``."""
    return AssetCheckSpec(name, asset=asset, blocking=blocking, description=description)


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
        metadata={**outcome.metadata, "problems": len(outcome.problems)},
    )
