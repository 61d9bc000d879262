"""Corrupted, augmented and adversarial variants of samples: the ``variants`` table.

A transform is named by a spec string: a corruption (``fog(severity=2)``), an augmentation
(``trivial_augment``, ``rand_augment(num_ops=2, magnitude=9)``, ...), an RPR perturbation
scheme (``pixels``, ``gaussian(sigma=0.1)``, ``salt_pepper(p=0.05)``: one random try of the
scheme, drawn apart from the scoring's tries) or an attack (``fgsm(eps=0.1)``,
``pgd(eps=0.1, steps=10)``; these need the reference model).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from robust_data.errors import RobustDataError
from robust_data.ingest.arrays import class_names, decode_samples
from robust_data.ingest.images import encode_png
from robust_data.perturb.corrupt import CORRUPTIONS, CorruptionScheme, corrupt
from robust_data.perturb.rng import purpose_key, sample_keys
from robust_data.perturb.schemes import Scheme, parse_scheme
from robust_data.present.progress import progress_bar
from robust_data.present.summary import ROW_COUNT, StageSummary, logged
from robust_data.store.checks import (
    CheckOutcome,
    agreement_problems,
    range_problems,
    schema_problems,
    unique_problems,
)
from robust_data.store.schema import IMAGE_TYPE, column, table_metadata
from robust_data.variants.adversarial import attack, parse_attack
from robust_data.variants.augment import augment, parse_augmentation

VARIANTS_SCHEMA = pa.schema(
    [
        column("variant_id", pa.string(), '"{parent}~{transform}~{seed}"', nullable=False),
        column("parent_sample_id", pa.string(), "The kept sample it was made from", nullable=False),
        column("split", pa.string(), "Its parent's split", nullable=False),
        column(
            "transform",
            pa.string(),
            'Canonical transform spec, e.g. "fog(severity=2)"',
            nullable=False,
        ),
        column(
            "kind",
            pa.string(),
            "corruption, augmentation, perturbation (an RPR scheme) or adversarial",
            nullable=False,
        ),
        column("severity", pa.int32(), "1..5 for corruptions; null otherwise"),
        column("seed", pa.int64(), "Seed of the copy", nullable=False),
        column("label", pa.int64(), "The parent's label", nullable=False),
        column("label_name", pa.string(), "The parent's class name", nullable=False),
        column("image", IMAGE_TYPE, "{bytes: PNG, path}", nullable=False),
    ]
)
"""One row per generated image, tied to its parent sample."""

DEFAULT_TRANSFORMS = (
    "pixels",
    "rotate(severity=2)",
    "fog(severity=2)",
    "gaussian_noise(severity=3)",
    "trivial_augment",
)


@dataclass(frozen=True)
class Transform:
    """A parsed transform spec."""

    spec: str
    kind: str  # corruption, augmentation, perturbation or adversarial
    name: str
    severity: int | None = None


def parse_transform(spec: str) -> Transform:
    """Parse a corruption, augmentation or attack spec.

    Raises
    ------
    RobustDataError
        One line naming what is accepted.
    """
    name = spec.split("(", 1)[0].strip()
    if name in CORRUPTIONS:
        scheme = parse_scheme(spec)
        assert isinstance(scheme, CorruptionScheme)  # parse_scheme maps corruption names to one
        return Transform(scheme.spec, "corruption", scheme.name, scheme.severity)
    if name in ("fgsm", "pgd"):
        return Transform(parse_attack(spec).spec, "adversarial", name)
    if name in ("pixels", "gaussian", "salt_pepper"):
        return Transform(parse_scheme(spec).spec, "perturbation", name)
    try:
        return Transform(parse_augmentation(spec).spec, "augmentation", name)
    except RobustDataError:
        raise RobustDataError(
            f"a corruption ({', '.join(sorted(CORRUPTIONS))}), an augmentation "
            "(trivial_augment, rand_augment, augmix, ...), an RPR scheme (pixels, gaussian, "
            "salt_pepper) or fgsm/pgd",
            repr(spec),
            "pass one of those",
        ) from None


def apply_transform(
    transform: Transform,
    images: torch.Tensor,
    labels: torch.Tensor,
    sample_ids: Sequence[str],
    seed: int,
    model: nn.Module | None = None,
) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> transformed (N, C, H, W), seeded per sample."""
    if transform.kind == "corruption":
        return corrupt(images, transform.name, transform.severity or 1, seed, sample_ids)
    if transform.kind == "augmentation":
        return augment(images, transform.spec, seed, sample_ids)
    if transform.kind == "perturbation":
        return perturb(images, transform.spec, seed, sample_ids)
    if model is None:
        raise RobustDataError(
            f"a model for the attack {transform.spec}", "none", "pass the model to attack"
        )
    return attack(model, images, labels, transform.spec, seed, sample_ids)


def perturb(images: torch.Tensor, spec: str, seed: int, sample_ids: Sequence[str]) -> torch.Tensor:
    """One try of an RPR scheme per image, keyed apart from the scoring's tries.

    Parameters
    ----------
    images : torch.Tensor
        (N, C, H, W) float in [0, 1].
    spec : str
        An RPR scheme spec (``pixels``, ``gaussian(sigma=0.1)``, ...).

    Returns
    -------
    torch.Tensor
        (N, C, H, W) in [0, 1].
    """
    scheme = parse_scheme(spec)
    if not isinstance(scheme, Scheme):
        raise RobustDataError(
            "an RPR scheme (pixels, gaussian, salt_pepper)", repr(spec), "pass one of those"
        )
    keys = sample_keys(list(sample_ids)) ^ purpose_key(f"variant:{scheme.spec}")
    out = scheme.apply(images, seed, keys, torch.zeros(1, dtype=torch.int64))
    return out[:, 0]


@dataclass
class Variants:
    """Generated variants.

    Attributes
    ----------
    table : pa.Table
        :data:`VARIANTS_SCHEMA` rows.
    examples : dict
        Transform spec -> list of (image (C, H, W), caption) for the first parents, for a
        gallery.
    """

    table: pa.Table
    examples: dict[str, list[tuple[np.ndarray, str]]]

    def counts(self) -> dict[str, int]:
        """Rows per transform spec."""
        return dict(Counter(self.table.column("transform").to_pylist()))

    def summary(self) -> VariantsSummary:
        """Images made and the transforms that made them, for the asset's metadata and the CLI."""
        return VariantsSummary(rows=self.table.num_rows, transforms=tuple(sorted(self.counts())))


@dataclass(frozen=True, kw_only=True)
class VariantsSummary(StageSummary):
    """The summary of the variants: images made, and the transforms that made them (sorted)."""

    rows: int = field(metadata=logged(key=ROW_COUNT))
    transforms: tuple[str, ...] = ()


def copy_key(seed: int, copy: int) -> int:
    """The random key of the ``copy``-th variant of a sample under ``seed`` (copy 0 of seed 0
    is key 0). Shared by stored variants and the training sets of robust_data.report.retrain, so the
    same sample gets the same c-th copy wherever it is made."""
    return seed * 1009 + copy


def make_variants(
    samples: pa.Table,
    transforms: Sequence[str] = DEFAULT_TRANSFORMS,
    seed: int = 0,
    splits: tuple[str, ...] = ("train",),
    model: nn.Module | None = None,
    batch_size: int = 512,
    progress: bool = True,
    copies: np.ndarray | None = None,
) -> Variants:
    """``copies[i]`` variants (default one) per sample of ``splits`` and per transform.

    Parameters
    ----------
    samples : pa.Table
        A samples table (``raw_samples``, or a curated table with the same columns).
    transforms : sequence of str
        Transform specs (see :func:`parse_transform`).
    seed : int
        With the copy number (:func:`copy_key`) and the parent's sample_id, keys every draw.
    model : nn.Module, optional
        Needed for fgsm/pgd.
    copies : np.ndarray, optional
        (N,) int >= 0 per sample of ``splits`` in table order: copies per transform (a
        variant plan's :meth:`~robust_data.curation.presets.VariantPlan.copies_per_sample`). Copy 0
        is ``<sample_id>~<transform>~<seed>``, copy c > 0 adds ``~<c>``.
    """
    parsed = [parse_transform(t) for t in transforms]
    data = decode_samples(samples, splits=splits)
    counts = np.ones(len(data), np.int64) if copies is None else np.asarray(copies, np.int64)
    if counts.shape != (len(data),) or (counts < 0).any():
        raise ValueError(
            f"expected copies: {len(data)} counts >= 0, one per sample; found shape "
            f"{counts.shape} with minimum {counts.min(initial=0)}"
        )
    names = class_names(samples)
    rows: dict[str, list] = {name: [] for name in VARIANTS_SCHEMA.names}
    examples: dict[str, list[tuple[np.ndarray, str]]] = {}
    bar = progress_bar(
        total=len(parsed) * int(counts.sum()),
        desc="variants",
        unit="img",
        mininterval=0.5,
        disable=not progress,
    )
    for transform in parsed:
        for c in range(int(counts.max(initial=0))):
            chosen = np.flatnonzero(counts > c)
            for start in range(0, len(chosen), batch_size):
                index = chosen[start : start + batch_size]
                ids = [data.sample_ids[i] for i in index]
                images = torch.from_numpy(np.ascontiguousarray(data.images[index]))
                labels = torch.from_numpy(np.asarray(data.labels[index]))
                out = apply_transform(transform, images, labels, ids, copy_key(seed, c), model)
                pixels = (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
                suffix = f"~{c}" if c else ""
                for i, sample_id in enumerate(ids):
                    label = int(labels[i])
                    rows["variant_id"].append(f"{sample_id}~{transform.spec}~{seed}{suffix}")
                    rows["parent_sample_id"].append(sample_id)
                    rows["split"].append(str(data.splits[index[i]]))
                    rows["transform"].append(transform.spec)
                    rows["kind"].append(transform.kind)
                    rows["severity"].append(transform.severity)
                    rows["seed"].append(seed)
                    rows["label"].append(label)
                    rows["label_name"].append(names[label])
                    rows["image"].append({"bytes": encode_png(pixels[i]), "path": None})
                if transform.spec not in examples:
                    examples[transform.spec] = [
                        (out[i].numpy(), transform.spec[:14]) for i in range(min(8, len(ids)))
                    ]
                bar.update(len(ids))
    bar.close()
    table = pa.table(rows, schema=VARIANTS_SCHEMA)
    meta = {"transforms": [t.spec for t in parsed], "seed": seed, "splits": list(splits)}
    table = table.replace_schema_metadata(table_metadata("variants", "raw_samples", meta))
    return Variants(table, examples)


def check_variants(variants: pa.Table, samples: pa.Table) -> CheckOutcome:
    """``variants``: schema, unique ids, every parent a sample with the same label and split."""
    problems = schema_problems(variants, VARIANTS_SCHEMA)
    if problems:
        return CheckOutcome(problems, {"rows": variants.num_rows})
    problems += unique_problems(variants, "variant_id")
    problems += agreement_problems(variants, samples, "parent_sample_id", "label", "parents")
    problems += range_problems(variants, "severity", 1, 5, "severities")
    return CheckOutcome(problems, {"rows": variants.num_rows})
