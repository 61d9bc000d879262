"""``robust_data.curate``: the main job's curation in one Python call, for notebooks and scripts.

It makes the tables the main job's assets make, up to the variants, in this process and in the
assets' order, each with the one core call its asset makes (no Dagster: the core never imports
it; ``bench/curation_effect.py`` drives the core the same way)::

    raw_samples      robust_data.ingest.build.ingest
    reference_model  robust_data.scoring.reference.train_reference
    rpr_scores       robust_data.scoring.rpr.score.score_samples
    oof_predictions  robust_data.label_quality.oof.oof_predictions
    label_quality    robust_data.label_quality.assess.assess_labels
    curated_samples, curation_ledger
                     robust_data.curation.presets.apply_preset (with the home's reviews)
    variants         robust_data.curation.presets.plan_variants

with the assets' default options, so ``home=`` stores what ``robust-data curate`` would (same
paths, schemas and rows; ``robust-data browse``, ``export`` and ``query`` then work on it). It
stops there: no export, retraining or report (``robust-data curate`` runs those).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from robust_data.curation.presets import (
    DEFAULT_PRESET,
    Preset,
    VariantOptions,
    apply_preset,
    customized,
    plan_variants,
)
from robust_data.curation.reviews import load_reviews
from robust_data.defaults import MAX_STEPS
from robust_data.errors import DatasetError
from robust_data.ingest.build import IngestOptions, IngestResult, ingest
from robust_data.ingest.sources import registration_for
from robust_data.label_quality.assess import LabelQualityOptions, assess_labels
from robust_data.label_quality.oof import OofOptions, oof_predictions
from robust_data.scoring.models import ModelOptions, TrainedModel
from robust_data.scoring.reference import check_model_for, load_reference, train_reference
from robust_data.scoring.rpr.engine import RprOptions
from robust_data.scoring.rpr.score import score_samples
from robust_data.scoring.rpr.table import scored_max_steps
from robust_data.scoring.spec import ModelSpec
from robust_data.store.lock import home_lock
from robust_data.store.store import Store

#: Stores a table under its asset's name (None: kept in memory only).
Keep = Callable[[pa.Table, str], None]


@dataclass(frozen=True)
class CurationTables:
    """What :func:`curate` made: one DataFrame per table, and the reference model.

    Attributes
    ----------
    dataset : str
        The dataset (partition) name.
    samples : pd.DataFrame
        ``raw_samples``: one row per image of every split (PNG bytes in ``image``).
    scores : pd.DataFrame
        ``rpr_scores``: one row per sample of every split; a low ``steps_to_flip`` (``robust``
        False) marks a fragile image, null means it survived every try.
    label_quality : pd.DataFrame
        ``label_quality``: one row per training sample; ``is_label_issue`` and a low
        ``label_quality`` (in [0, 1]) mark a suspect label.
    kept : pd.DataFrame
        ``curated_samples``: the training samples the preset kept (relabelled ones carry their
        new label).
    ledger : pd.DataFrame
        ``curation_ledger``: one row per training sample, ``kept`` and the ``reason`` of a drop.
    variants : pd.DataFrame
        ``variants``: the preset's variant images of the kept samples.
    model : TrainedModel
        The reference model (in memory; its weight file is in the home when one was given).
    home : Path or None
        The home the tables were stored in; None when kept in memory only.
    """

    dataset: str
    samples: pd.DataFrame
    scores: pd.DataFrame
    label_quality: pd.DataFrame
    kept: pd.DataFrame
    ledger: pd.DataFrame
    variants: pd.DataFrame
    model: TrainedModel
    home: Path | None = None


def curate(
    dataset: str,
    *,
    home: str | os.PathLike[str] | None = None,
    preset: str = DEFAULT_PRESET,
    seed: int = 0,
    max_steps: int = MAX_STEPS,
    epochs: int | None = None,
    root: str | None = None,
    name: str | None = None,
    device: str = "auto",
    model: str | None = None,
    arch: str | None = None,
) -> CurationTables:
    """Ingest, score, assess and curate ``dataset`` here; return its tables as DataFrames.

    Parameters
    ----------
    dataset : str
        A source (``digits``, ``mnist-5k``, ``mnist`` with ``root``, ``imagefolder:PATH``,
        ``parquet:PATH``) or, with ``home``, a dataset registered there. Samples already
        stored in ``home`` are used as they are (not ingested again, ``seed`` not re-applied
        to their split).
    home : path, optional
        Store every table in this home as the Dagster assets would, under its writers' lock;
        the dataset is registered there. None: nothing is written (the weight file goes to a
        temporary folder, removed on return).
    preset : str
        A curation preset (``mined``, ``paper``, ``clean``, ``focus``).
    seed : int
        Seeds every stage: the split (for sources without a test split), the reference and
        fold models, the RPR perturbations, the folds, the curation's draws and the
        variants. The same seed gives the same tables. 0 is the assets' default.
    max_steps : int
        RPR tries per image (>= 1; fewer is faster and calls more images robust).
    epochs : int, optional
        Passes over the training split of the reference model and of each fold model
        (default: the recipe's 4; fewer is faster and gives weaker models).
    root, name : str, optional
        The source's local root and the dataset name, as ``robust-data ingest`` takes them.
    device : str
        ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    model, arch : str, optional
        Your own model (a TorchScript file, or ``package.module:function``, see
        robust_data.scoring.spec.ModelSpec) or a built-in architecture (``simple_cnn``,
        ``resnet``); at most one. Neither: ``simple_cnn``.

    Raises
    ------
    RobustDataError
        One line, for an unknown preset or dataset, a bad option, or a name the home binds to
        another source; checked before anything is trained or written.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise DatasetError(
            "seed as a whole number in 0..4294967295", repr(seed), "pass seed=0 (or another)"
        )
    chosen = customized(preset, seed=seed)
    rpr = RprOptions(max_steps=max_steps, seed=seed, device=device)
    spec = ModelSpec.from_flags(model, arch)
    chosen_model = spec.fields() if spec is not None else {}
    length = {} if epochs is None else {"epochs": epochs}
    recipe = ModelOptions(seed=seed, **length, **chosen_model)  # type: ignore[arg-type]
    if home is None:
        registration = registration_for(dataset, {}, root, name)
        with tempfile.TemporaryDirectory(prefix="robust-data-") as folder:
            options = IngestOptions(seed=seed)
            made = ingest(registration.source, registration.root, registration.name, options)
            check_model_for(made.samples, recipe)
            weights = str(Path(folder) / "reference_model.pt")
            stages = _Stages(chosen, recipe, rpr, weights, _in_memory)
            return stages.run(registration.name, made.samples)
    store = Store.open(home)
    registration = registration_for(dataset, store.registrations(), root, name)
    with home_lock(store.ensure().home, "robust_data.curate"):
        store.claim(registration)  # a name bound to another source is refused here
        partition = registration.name

        def keep(table: pa.Table, asset: str) -> None:
            store.write(table, asset, partition)

        fresh: IngestResult | None = None
        if store.has("raw_samples", partition):
            samples = store.read("raw_samples", partition)
        else:
            options = IngestOptions(seed=seed)
            fresh = ingest(registration.source, registration.root, partition, options)
            samples = fresh.samples
        check_model_for(samples, recipe)  # your model, on the dataset: before any write
        if fresh is not None:
            keep(fresh.rejects, "ingest_rejects")
            keep(fresh.samples, "raw_samples")
        store.register(registration)
        weights = store.weights_location("reference_model", partition)
        stages = _Stages(chosen, recipe, rpr, weights, keep, store.home)
        return stages.run(partition, samples, load_reviews(store, partition))


def _in_memory(table: pa.Table, asset: str) -> None:
    """A :data:`Keep` that stores nothing."""


@dataclass(frozen=True)
class _Stages:
    """The stages after ingestion: how each runs, and where its table goes (``keep``)."""

    chosen: Preset
    recipe: ModelOptions
    rpr: RprOptions
    weights: str
    keep: Keep
    home: Path | None = None

    def run(
        self, dataset: str, samples: pa.Table, reviews: pa.Table | None = None
    ) -> CurationTables:
        """Every stage on ``samples``, in the assets' order, each table kept as it is made."""
        keep, seed, device = self.keep, self.rpr.seed, self.rpr.device
        reference = train_reference(samples, self.recipe, self.weights, device=device)
        keep(reference, "reference_model")
        model, file = load_reference(reference)
        scores = score_samples(samples, model, file.sha256, self.rpr).table
        keep(scores, "rpr_scores")
        oof = OofOptions(model=self.recipe, seed=seed, device=device)
        folds = oof_predictions(samples, model, oof).table(
            {"seed": oof.seed, "embedding_dim": oof.embedding_dim}
        )
        keep(folds, "oof_predictions")
        quality = assess_labels(folds, LabelQualityOptions()).table
        keep(quality, "label_quality")
        curation = apply_preset(samples, scores, quality, self.chosen, reviews)
        keep(curation.curated, "curated_samples")
        keep(curation.ledger, "curation_ledger")
        made = plan_variants(
            curation.curated,
            scores,
            self.chosen,
            VariantOptions(seed=seed),
            model.model,
            scored_max_steps(scores),
        ).table
        keep(made, "variants")
        return CurationTables(
            dataset=dataset,
            samples=samples.to_pandas(),
            scores=scores.to_pandas(),
            label_quality=quality.to_pandas(),
            kept=curation.curated.to_pandas(),
            ledger=curation.ledger.to_pandas(),
            variants=made.to_pandas(),
            model=model,
            home=self.home,
        )
