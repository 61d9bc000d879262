"""How an export's samples were judged, from what the stored tables recorded.

Every value comes from a stored table's parameters (its robust-data metadata) or, for RPR
tables made before they recorded them, from their ``scheme``/``max_steps``/``seed`` columns;
nothing is filled in from today's defaults. A value no table recorded is left out of
``lineage.json``'s ``judged`` and named "not recorded" on the card.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from robust_data.store.schema import read_params

#: The RPR scoring's recorded settings (rpr_scores' parameters).
RPR_KEYS = ("scheme", "max_steps", "seed", "device", "precision", "splits")
#: The columns older rpr_scores tables record them in instead (one value per table).
RPR_COLUMNS = ("scheme", "max_steps", "seed")
#: cleanlab's settings (label_quality's parameters).
LABEL_KEYS = ("method", "filter_by", "datalab")
#: The out-of-fold predictions' settings (oof_predictions' parameters).
OOF_KEYS = ("folds", "seed", "embedding_dim", "warnings")
#: curated_samples' parameters that are not policy rules.
CURATION_KEYS = ("preset", "balance", "reviews")


def _picked(params: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: params[key] for key in keys if key in params}


def rpr_settings(schema: pa.Schema, columns: dict[str, list[Any]]) -> dict[str, Any]:
    """The RPR scoring's scheme, max_steps, seed (and device, precision, splits where recorded).

    Parameters
    ----------
    columns : dict
        ``rpr_scores``' :data:`RPR_COLUMNS` it has, for tables whose parameters lack them; a
        column holding more than one value is not used.
    """
    found = _picked(read_params(schema), RPR_KEYS)
    for name, values in columns.items():
        distinct = set(values)
        if name not in found and len(distinct) == 1:
            found[name] = distinct.pop()
    return found


def judging_record(
    schemas: dict[str, pa.Schema], rpr_columns: dict[str, list[Any]], policy: dict[str, Any]
) -> dict[str, Any]:
    """``lineage.json``'s ``judged``: RPR, label quality, folds, curation, variants made.

    Parameters
    ----------
    schemas : dict
        Schemas of the stored tables the export read, by table name (``oof_predictions`` and
        ``variants`` only when present and used).
    rpr_columns : dict
        See :func:`rpr_settings`.
    policy : dict
        ``curated_samples``' parameters (the preset, its rules, its plan, reviews applied).
    """
    curation = _picked(policy, CURATION_KEYS)
    rules = {k: v for k, v in policy.items() if k not in (*CURATION_KEYS, "plan")}
    record: dict[str, Any] = {
        "rpr": rpr_settings(schemas["rpr_scores"], rpr_columns),
        "label_quality": _picked(read_params(schemas["label_quality"]), LABEL_KEYS),
        "out_of_fold": (
            _picked(read_params(schemas["oof_predictions"]), OOF_KEYS)
            if "oof_predictions" in schemas
            else {}
        ),
        "curation": {**curation, "rules": rules, "plan": policy.get("plan", {})},
    }
    if "variants" in schemas:
        record["variants_made"] = read_params(schemas["variants"])
    return record


def _value(value: Any) -> str:
    """A recorded value as the card shows it: code, JSON for lists and mappings."""
    if isinstance(value, str):
        return f"`{value}`"
    return f"`{json.dumps(value, sort_keys=True)}`"


def _pairs(found: dict[str, Any]) -> str:
    """``name `value`, ...``; "not recorded" when empty."""
    return ", ".join(f"{k} {_value(v)}" for k, v in found.items()) or "not recorded"


def _one(found: dict[str, Any], key: str) -> str:
    """One recorded value as the card shows it, or "not recorded"."""
    return _value(found[key]) if key in found else "not recorded"


def _missing(found: dict[str, Any], keys: tuple[str, ...]) -> str:
    """A note naming the keys a table recorded others but not these, or nothing."""
    absent = [k for k in keys if k not in found]
    return f" (not recorded: {', '.join(absent)})" if found and absent else ""


def judging_lines(lineage: dict[str, Any], variants_sentence: str) -> list[str]:
    """The card's "How samples were judged" section, from ``lineage['judged']``."""
    judged, model = lineage["judged"], lineage["model"]
    rpr, quality, oof = judged["rpr"], judged["label_quality"], judged["out_of_fold"]
    curation = judged["curation"]
    lines = [
        "## How samples were judged",
        "",
        "Every value below is what the stored tables recorded when they were made.",
        "",
        f"- **Reference model**: {model['arch']}, sha256 `{model['sha256'][:16]}`, recipe "
        f"{_pairs(model['config'])}.",
        f"- **Robustness (RPR)**, `rpr_scores`: {_pairs(rpr)}{_missing(rpr, RPR_KEYS[:3])}. "
        "Each image is perturbed up to max_steps times under the scheme; one whose prediction "
        "never changes is robust, else `steps_to_flip` is the try that changed it "
        "(low = fragile).",
        f"- **Label quality**, `label_quality` (cleanlab): {_pairs(quality)}"
        f"{_missing(quality, LABEL_KEYS[:2])}: `get_label_quality_scores(method=...)` gives "
        "`label_quality` (low = likely mislabelled), `find_label_issues(filter_by=...)` gives "
        "`is_label_issue`; Datalab finds outliers and near-duplicates when datalab is true.",
        f"- **Out-of-fold predictions**, `oof_predictions` (what cleanlab judged): "
        f"{_pairs(oof)}{_missing(oof, ('folds',))}: each training sample is predicted by a "
        "model that did not train on it (stratified folds).",
        f"- **Curation**: preset {_one(curation, 'preset')}, balance "
        f"{_one(curation, 'balance')}, human review decisions applied "
        f"{_one(curation, 'reviews')}; rules: {_pairs(curation['rules'])}.",
        f"- **Variant plan** (the preset's): {_pairs(curation['plan'])}. {variants_sentence}",
    ]
    if "variants_made" in judged:
        lines.append(
            f"- **Variants made**, `variants` (the variants in this export): "
            f"{_pairs(judged['variants_made'])}."
        )
    return [*lines, ""]
