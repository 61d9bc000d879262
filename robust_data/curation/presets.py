"""Curation presets: a :class:`CurationPolicy` plus a :class:`VariantPlan`, by name.

``paper``  the paper's method: drop misclassified and non-robust points (and label issues,
           outliers, duplicates), balance every class down to the smallest; no variants.
``clean``  drop only label issues, outliers and duplicates; keep fragile points; no balancing
           by dropping (class weights in training instead); two ``pixels`` copies per sample.
``mined``  like ``clean``, but repair confident label issues to cleanlab's suggestion, and
           train with hard variants: per sample and transform (``pixels``,
           ``translate(severity=1)``) the 1-3 highest-loss of 8 keyed draws under the
           reference model (3 for the most fragile), a fragile point's flipping perturbation
           among them; class quotas give the most fragile class 2 more copies per sample
           (``class_focus``), spread at random within the class.
``focus``  like ``clean`` but also drop misclassified points, and spend more of the variant
           budget on fragile points: 1 ``pixels`` copy per sample plus up to 3 more, growing
           with fragility (1 - steps_to_flip / max_steps; robust points get none extra).

A plan's budget is explicit (:meth:`VariantPlan.copies_per_sample`, :meth:`VariantPlan.total`),
so a baseline can be given the same number of variant images
(:func:`robust_data.curation.budget.class_spread`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from torch import nn

from robust_data.curation.budget import class_quotas, class_spread, fragility
from robust_data.curation.policy import Curation, CurationPolicy, select_curated
from robust_data.curation.reviews import latest_decisions
from robust_data.defaults import MAX_STEPS
from robust_data.errors import DatasetError, RobustDataError
from robust_data.ingest.arrays import class_names, decode_samples
from robust_data.store.schema import column_by_id, table_metadata
from robust_data.variants.make import Variants, make_variants
from robust_data.variants.mining import (
    MINING_MODES,
    FlipSource,
    MiningOptions,
    mine,
    mined_variants,
)

BALANCES = ("drop", "weights")
#: ``mined``'s variant transforms: the scoring scheme and a mild shift, the best of
#: bench/variant_sweep.py on a validation split (noise of any strength added nothing; a
#: one-severity translate cut the flip rate most). Neither is a held-out family of the report
#: (salt_pepper, and the corruptions the plan does not use).
MINED_TRANSFORMS = ("pixels", "translate(severity=1)")
#: ``mined``'s repair threshold: a label issue whose given label has out-of-fold probability
#: at most this is relabelled to cleanlab's suggestion (see CurationPolicy.relabel_below).
RELABEL_BELOW = 0.05
#: The most extra copies per sample class quotas may give (VariantPlan.class_focus): beyond
#: this a typo would make millions of images.
MAX_CLASS_FOCUS = 16


@dataclass(frozen=True)
class VariantPlan:
    """Which variants a curated set trains with, and how many per sample.

    Attributes
    ----------
    transforms : tuple of str
        Variant transform specs (see :func:`robust_data.variants.make.parse_transform`).
    copies : int
        Copies per sample and transform for every kept sample (>= 0).
    focus_copies : int
        Extra copies for the most fragile points: a point that flips at try t of ``max_steps``
        gets ``round(focus_copies * (1 - t / max_steps))`` more; robust points none.
    mining : str
        ``none`` (default): each copy is a plain keyed draw (robust_data.variants.make);
        ``hard``: each sample's copies are the highest-loss of ``candidates`` keyed draws
        under the reference model, a non-robust sample's flipping perturbation among them;
        ``random``: as many of the same draws, chosen at random (the equal-budget baseline).
        See robust_data.variants.mining.
    candidates : int
        k, draws per sample and transform when mining (>= the most copies a sample gets).
    class_focus : int
        Class quotas: extra copies per sample for the most fragile class (mean fragility of
        its samples), proportionally fewer for the others, spread at random within each
        class (robust_data.curation.budget). 0 (default): none.
    """

    transforms: tuple[str, ...] = ()
    copies: int = 0
    focus_copies: int = 0
    mining: str = "none"
    candidates: int = 8
    class_focus: int = 0

    def __post_init__(self) -> None:
        if min(self.copies, self.focus_copies, self.class_focus) < 0:
            raise RobustDataError(
                "copies >= 0, focus_copies >= 0 and class_focus >= 0",
                f"{self.copies}, {self.focus_copies} and {self.class_focus}",
                "pass 0 or more",
                options=("copies", "focus_copies", "class_focus"),
            )
        if self.mining not in MINING_MODES:
            raise RobustDataError(
                f"mining in {list(MINING_MODES)}",
                repr(self.mining),
                "pass one of those",
                options=("mining",),
            )
        if self.class_focus > MAX_CLASS_FOCUS:
            raise RobustDataError(
                f"class_focus <= {MAX_CLASS_FOCUS} (extra copies per sample of the most "
                "fragile class)",
                str(self.class_focus),
                "pass 2 (each copy is a training image per sample and transform)",
                options=("class_focus",),
            )
        most = self.copies + self.focus_copies + self.class_focus
        if self.mining != "none" and self.candidates < most:
            raise RobustDataError(
                "candidates >= copies + focus_copies + class_focus when mining",
                f"{self.candidates} < {most}",
                "raise candidates",
                options=("candidates",),
            )

    def copies_per_sample(
        self,
        steps_to_flip: np.ndarray,
        max_steps: int,
        labels: np.ndarray | None = None,
        seed: int = 0,
    ) -> np.ndarray:
        """(N,) int copies per sample and transform.

        Parameters
        ----------
        steps_to_flip : np.ndarray
            (N,) int, the try at which the point flipped in 1..max_steps; 0 or negative for
            robust points (they never flipped). Lower is more fragile.
        labels : np.ndarray, optional
            (N,) int classes; needed when ``class_focus`` > 0.
        seed : int
            Seeds where each class's quota lands within the class (the variants' seed).
        """
        frail = fragility(steps_to_flip, max_steps)
        copies = self.copies + np.round(self.focus_copies * frail).astype(np.int64)
        if self.class_focus == 0:
            return copies
        if labels is None or len(labels) != len(copies):
            raise ValueError(
                f"expected labels for each of {len(copies)} samples with class_focus "
                f"{self.class_focus}; found {None if labels is None else len(labels)}"
            )
        quotas = class_quotas(labels, frail, self.class_focus)
        return copies + class_spread(labels, quotas, seed)

    def total(
        self,
        steps_to_flip: np.ndarray,
        max_steps: int,
        labels: np.ndarray | None = None,
        seed: int = 0,
    ) -> int:
        """Variant images the plan makes for these samples (all transforms)."""
        copies = self.copies_per_sample(steps_to_flip, max_steps, labels, seed)
        return int(copies.sum()) * len(self.transforms)


@dataclass(frozen=True)
class Preset:
    """A named curation: which samples to keep, how to balance, which variants to add.

    Attributes
    ----------
    balance : str
        ``drop``: the policy's quota drops over-quota samples; ``weights``: keep them and
        train with inverse-frequency class weights.
    """

    name: str
    description: str
    policy: CurationPolicy
    plan: VariantPlan = field(default_factory=VariantPlan)
    balance: str = "weights"

    def __post_init__(self) -> None:
        if self.balance not in BALANCES:
            raise RobustDataError(
                f"balance in {BALANCES}",
                repr(self.balance),
                "pass one of those",
                options=("balance",),
            )


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        "paper",
        "drop misclassified and non-robust points, balance by dropping; no variants",
        CurationPolicy(quota_mode="smallest"),
        VariantPlan(),
        balance="drop",
    ),
    "clean": Preset(
        "clean",
        "drop label issues, outliers and duplicates only; 2 pixels copies per sample",
        CurationPolicy(require_correct=False, require_robust=False, quota_mode="none"),
        VariantPlan(("pixels",), copies=2),
    ),
    "mined": Preset(
        "mined",
        "repair confident label issues (drop the rest), outliers and duplicates out; hard "
        "variants: the hardest 1-3 of 8 draws of pixels and translate, more for fragile points "
        "and 2 more per sample for the most fragile class",
        CurationPolicy(
            require_correct=False,
            require_robust=False,
            quota_mode="none",
            relabel_below=RELABEL_BELOW,
        ),
        VariantPlan(
            MINED_TRANSFORMS, copies=1, focus_copies=2, mining="hard", candidates=8, class_focus=2
        ),
    ),
    "focus": Preset(
        "focus",
        "drop misclassified points and label issues; 1 pixels copy plus up to 3 for fragile ones",
        CurationPolicy(require_correct=True, require_robust=False, quota_mode="none"),
        VariantPlan(("pixels",), copies=1, focus_copies=3),
    ),
}


def preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises
    ------
    RobustDataError
        Naming the presets there are.
    """
    if name not in PRESETS:
        raise RobustDataError(
            f"a preset in {sorted(PRESETS)}",
            repr(name),
            f"pass e.g. `preset={DEFAULT_PRESET}`",
            options=("preset",),
        )
    return PRESETS[name]


#: The main job's preset: the winner of bench/curation_effect.py over clean and dirty data
#: (README "Does curation help?", bench/RESULTS.md).
DEFAULT_PRESET = "mined"


def customized(name: str, class_focus: int | None = None, **overrides: Any) -> Preset:
    """Preset ``name`` with some :class:`CurationPolicy` fields replaced (None: keep), and its
    plan's ``class_focus`` when given.

    Raises
    ------
    RobustDataError
        For an unknown preset or policy field, or a plan the change makes invalid.
    """
    base = preset(name)
    names = {f.name for f in fields(CurationPolicy)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise RobustDataError(
            f"CurationPolicy fields {sorted(names)}", str(unknown), "override only those"
        )
    changes = {k: v for k, v in overrides.items() if v is not None}
    chosen = replace(base, policy=replace(base.policy, **changes)) if changes else base
    if class_focus is None or class_focus == chosen.plan.class_focus:
        return chosen
    return replace(chosen, plan=replace(chosen.plan, class_focus=class_focus))


def preset_params(chosen: Preset) -> dict[str, Any]:
    """The preset as JSON-ready table parameters (read back by :func:`preset_from_params`).

    A plan that does not mine leaves ``mining`` and ``candidates`` out, so its parameters are
    those of the tables made before mining existed.
    """
    plan = asdict(chosen.plan)
    plan["transforms"] = list(chosen.plan.transforms)
    if chosen.plan.mining == "none":
        del plan["mining"], plan["candidates"]
    if chosen.plan.class_focus == 0:
        del plan["class_focus"]
    return {**asdict(chosen.policy), "preset": chosen.name, "balance": chosen.balance, "plan": plan}


def preset_from_params(params: dict[str, Any]) -> Preset:
    """The preset a ``curation_ledger`` was made with (its table parameters).

    Raises
    ------
    DatasetError
        When the table predates presets (no ``preset`` parameter): re-materialize curation.
    """
    if "preset" not in params:
        raise DatasetError(
            "a curation_ledger made with a preset (robust-data >= presets)",
            "one without",
            "re-materialize curation_assets",
        )
    policy = CurationPolicy(**{f.name: params[f.name] for f in fields(CurationPolicy)})
    plan = VariantPlan(**{**params["plan"], "transforms": tuple(params["plan"]["transforms"])})
    description = PRESETS[params["preset"]].description if params["preset"] in PRESETS else ""
    return Preset(params["preset"], description, policy, plan, params["balance"])


def apply_preset(
    samples: pa.Table,
    rpr: pa.Table,
    quality: pa.Table | None,
    chosen: Preset,
    reviews: pa.Table | None = None,
) -> Curation:
    """Apply the preset's policy, then the human reviews, to the training split of ``samples``.

    Rows of other splits (when ``samples`` has a ``split`` column) are left out first: the
    test split is never curated. ``reviews`` is a reviews table (robust_data.curation.reviews); the
    latest decision per sample wins. Both returned tables carry the whole preset in their
    parameters, and the number of decisions applied.
    """
    if "split" in samples.column_names:
        samples = samples.filter(pc.equal(samples.column("split"), "train"))
    decisions = latest_decisions(reviews) if reviews is not None else {}
    result = select_curated(samples, rpr, quality, chosen.policy, decisions)
    source = "raw_samples, rpr_scores, label_quality" + (", reviews" if decisions else "")
    params = {**preset_params(chosen), "reviews": len(decisions)}
    return Curation(
        result.curated.replace_schema_metadata(table_metadata("curated_samples", source, params)),
        result.ledger.replace_schema_metadata(table_metadata("curation_ledger", source, params)),
        result.shortfalls,
    )


@dataclass(frozen=True)
class VariantOptions:
    """Which variants :func:`plan_variants` makes.

    Attributes
    ----------
    transforms : tuple of str
        Transform specs, one copy of each per kept sample; empty: the preset's plan (its
        transforms, and its copies per sample, more for fragile points under ``focus``).
    seed : int
        Seed of the variants; seed 0 is the curated training set the report's seed 0 trains on.
    mining : str
        ``none``, ``hard`` or ``random`` (see :class:`VariantPlan`); empty: the preset's plan.
    candidates : int
        k, draws per sample and transform when mining; 0: the preset's plan.
    """

    transforms: tuple[str, ...] = ()
    seed: int = 0
    mining: str = ""
    candidates: int = 0


def plan_variants(
    curated: pa.Table,
    rpr: pa.Table,
    chosen: Preset,
    options: VariantOptions = VariantOptions(),
    model: nn.Module | None = None,
    max_steps: int = MAX_STEPS,
    progress: bool = True,
) -> Variants:
    """The variants a preset's plan adds to the curated training samples.

    Per kept sample, :meth:`VariantPlan.copies_per_sample` copies per plan transform, from its
    ``steps_to_flip`` in ``rpr`` (the ``rpr_scores`` table). With ``options.transforms`` given
    instead, one copy of each per sample. Copy c is keyed like the training sets of
    robust_data.report.retrain (seed 0 here is the curated set of seed 0 there). When the plan
    (or ``options``) mines, the copies are chosen from keyed candidates instead
    (:func:`mined_plan_variants`); the report's retraining does not mine yet.
    """
    train = curated.filter(pc.equal(curated.column("split"), "train"))
    seed = options.seed
    plan = replace(
        chosen.plan,
        transforms=options.transforms or chosen.plan.transforms,
        mining=options.mining or chosen.plan.mining,
        candidates=options.candidates or chosen.plan.candidates,
        **({"copies": 1, "focus_copies": 0} if options.transforms else {}),
    )
    if options.transforms and plan.mining == "none":
        return make_variants(train, options.transforms, seed, ("train",), model, progress=progress)
    ids = train.column("sample_id").to_pylist()
    steps = np.asarray([s or 0 for s in column_by_id(rpr, ids, "steps_to_flip")], np.int64)
    labels = np.asarray(train.column("label").to_numpy(), np.int64)
    copies = plan.copies_per_sample(steps, max_steps, labels, seed)
    if plan.mining != "none":
        return mined_plan_variants(train, rpr, plan, copies, steps, seed, model)
    return make_variants(
        train, plan.transforms, seed, ("train",), model, progress=progress, copies=copies
    )


def mined_plan_variants(
    train: pa.Table,
    rpr: pa.Table,
    plan: VariantPlan,
    copies: np.ndarray,
    steps: np.ndarray,
    seed: int,
    model: nn.Module | None,
) -> Variants:
    """``copies[i]`` mined variants per training sample and plan transform.

    Parameters
    ----------
    train : pa.Table
        The kept training samples (N rows).
    rpr : pa.Table
        The ``rpr_scores`` table: its ``scheme`` and ``seed`` regenerate the flips.
    copies, steps : np.ndarray
        (N,) int copies per sample, and ``steps_to_flip`` (0: robust).

    Raises
    ------
    RobustDataError
        Without the reference model.
    """
    if model is None:
        raise RobustDataError(
            f"the reference model to mine variants ({plan.mining})",
            "none",
            "pass the model, or mining='none'",
            options=("mining",),
        )
    data = decode_samples(train, splits=("train",))
    scheme = str(rpr.column("scheme")[0].as_py()) if rpr.num_rows else "pixels"
    rpr_seed = int(rpr.column("seed")[0].as_py()) if rpr.num_rows else 0
    options = MiningOptions(plan.mining, plan.candidates, seed)
    mined = mine(
        data.images,
        data.labels,
        data.sample_ids,
        model,
        plan.transforms,
        copies,
        options,
        FlipSource(steps, scheme, rpr_seed),
    )
    params = {
        "transforms": list(plan.transforms),
        "seed": seed,
        "splits": ["train"],
        "mining": plan.mining,
        "candidates": plan.candidates,
        "flip_scheme": scheme,
        "flip_seed": rpr_seed,
    }
    names = class_names(train)
    splits = [str(s) for s in data.splits]
    return mined_variants(mined, data.sample_ids, data.labels, splits, names, params)


def class_weights(labels: np.ndarray, classes: int) -> np.ndarray:
    """(classes,) float32 inverse-frequency weights, mean 1 over the present classes.

    A class with no samples gets weight 0.
    """
    counts = np.bincount(np.asarray(labels, np.int64), minlength=classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(classes)
    weights[present] = 1.0 / counts[present]
    weights[present] *= present.sum() / weights[present].sum()
    return weights.astype(np.float32)
