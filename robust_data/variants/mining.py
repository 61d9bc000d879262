"""Hard variants: per kept sample, draw k keyed candidates of a transform and keep m of them.

``hard`` keeps the m candidates with the highest cross-entropy loss under the reference model
(worst-of-k, Engstrom et al. 2019) and, for a non-robust sample, puts the exact perturbation
that flipped it in RPR scoring among them; ``random`` keeps m of the same k candidates at
random (keyed), the equal-budget baseline: same count, same transforms, no loss.

Every variant can be regenerated from the variants table alone:

- candidate j of sample s under transform T and seed is
  ``apply_transform(T, image_s, ..., seed=copy_key(seed, j))`` (robust_data.variants.make),
  the same image as the plain variants' copy j; its ``variant_id`` is
  ``{parent}~{T}~{seed}`` for j = 0 and ``{parent}~{T}~{seed}~{j}`` otherwise, as there;
- the flipping perturbation of a sample that flipped at try t of RPR scoring (scheme S, seed
  r) is ``perturbed_at(image_s, parent, S, r, t)`` (robust_data.scoring.rpr.engine); its row
  has transform S, seed r and ``variant_id`` ``{parent}~{S}~{r}~try{t}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from torch import nn
from torch.nn import functional as F

from robust_data.errors import RobustDataError
from robust_data.ingest.images import encode_png
from robust_data.perturb.rng import purpose_key, sample_keys, uniform
from robust_data.scoring.device import autocast, resolve_precision, trim_heap
from robust_data.scoring.rpr.engine import ModelRunner, RprOptions, perturbed_at, working_copy
from robust_data.store.schema import table_metadata
from robust_data.variants.make import (
    VARIANTS_SCHEMA,
    Variants,
    apply_transform,
    copy_key,
    parse_transform,
)

MINING_MODES = ("none", "hard", "random")
"""``none``: plain keyed copies (robust_data.variants.make); ``hard``: top-m loss of k;
``random``: m of k at random."""


@dataclass(frozen=True)
class MiningOptions:
    """How :func:`mine` chooses each sample's variants.

    Attributes
    ----------
    mode : str
        ``hard`` (highest loss first) or ``random`` (keyed random choice, the baseline).
    candidates : int
        k, candidates drawn per sample and transform (>= 1); each sample keeps at most k.
    seed : int
        With the candidate number (``copy_key(seed, j)``) and the sample id, keys every draw.
    include_flip : bool
        ``hard`` only: a sample with a finite ``steps_to_flip`` keeps the perturbation that
        flipped it in place of its lowest-loss kept candidate of the first transform.
    batch_size : int
        Samples per batch (each batch holds batch_size * k candidate images).
    """

    mode: str = "hard"
    candidates: int = 8
    seed: int = 0
    include_flip: bool = True
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.mode not in ("hard", "random") or self.candidates < 1 or self.batch_size < 1:
            raise RobustDataError(
                "mode hard or random, candidates >= 1 and batch_size >= 1",
                f"{self.mode!r}, {self.candidates} and {self.batch_size}",
                "pass those",
                options=("mode", "candidates", "batch_size"),
            )


@dataclass(frozen=True)
class FlipSource:
    """Where the flipping perturbations come from: the RPR scoring of the samples.

    Attributes
    ----------
    steps_to_flip : np.ndarray
        (N,) int, the try (1-based, as the engine numbers them) at which each sample flipped;
        0 or negative for a robust sample (no flip to include).
    scheme : str
        The scoring's scheme spec (the ``rpr_scores`` table's ``scheme``).
    seed : int
        The scoring's seed (its ``seed``).
    """

    steps_to_flip: np.ndarray
    scheme: str
    seed: int


@dataclass
class Mined:
    """The kept variants, in order: transform by transform, sample by sample.

    Attributes
    ----------
    images : np.ndarray
        (M, C, H, W) float32 in [0, 1].
    parent : np.ndarray
        (M,) int64 index of each variant's sample in the input.
    transform : list of str
        (M,) canonical transform spec (the RPR scheme for a flipping perturbation).
    seed : np.ndarray
        (M,) int64: the mining seed, or the scoring's seed for a flipping perturbation.
    candidate : np.ndarray
        (M,) int64 candidate number j in 0..k-1; -1 for a flipping perturbation.
    step : np.ndarray
        (M,) int64 the RPR try of a flipping perturbation; 0 for a candidate.
    loss : np.ndarray
        (M,) float32 cross-entropy under the reference model (high is hard; NaN in ``random``
        mode, which computes none).
    variant_ids : list of str
        (M,) ids as described in the module docs.
    """

    images: np.ndarray
    parent: np.ndarray
    transform: list[str]
    seed: np.ndarray
    candidate: np.ndarray
    step: np.ndarray
    loss: np.ndarray
    variant_ids: list[str]


def candidate_losses(
    model: nn.Module, candidates: torch.Tensor, labels: torch.Tensor, precision: str = "auto"
) -> torch.Tensor:
    """Cross-entropy of each candidate under ``model`` (no gradients).

    Parameters
    ----------
    candidates : torch.Tensor
        (B, K, C, H, W) float in [0, 1].
    labels : torch.Tensor
        (B,) int64.
    precision : str
        ``auto`` (bf16 autocast where the hardware has bf16 matrix units, as RPR scoring),
        ``fp32`` or ``bf16``.

    Returns
    -------
    torch.Tensor
        (B, K) float32 on the CPU; high is hard (the model is less sure of the label).
    """
    b, k = candidates.shape[:2]
    parameter = next(model.parameters(), None)
    device = _device(model)
    dtype = parameter.dtype if parameter is not None else torch.float32
    flat = candidates.flatten(0, 1).to(device=device, dtype=dtype)
    if len(flat) == 0:
        return torch.zeros(b, k)
    # The RPR engine's runner: channels-last, in cache-sized slices on the CPU.
    runner = ModelRunner(model, RprOptions(channels_last=flat.dim() == 4), compiled=False)
    with torch.inference_mode(), autocast(device, resolve_precision(precision, device)):
        logits = runner.eager(flat).float()
        target = labels.to(device).repeat_interleave(k)
        return F.cross_entropy(logits, target, reduction="none").view(b, k).cpu()


def _device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters are (the CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def random_order(sample_ids: Sequence[str], seed: int, k: int, spec: str) -> np.ndarray:
    """(N, k) int64: a keyed random permutation of the k candidates per sample (``random``)."""
    keys = sample_keys(list(sample_ids)) ^ purpose_key(f"mine-random:{spec}")
    u = uniform(seed, keys, torch.zeros(1, dtype=torch.int64), k)[:, 0]
    return np.argsort(u.numpy(), axis=1, kind="stable")


def chosen_candidates(
    losses: np.ndarray | None, order: np.ndarray | None, keep: np.ndarray
) -> list[np.ndarray]:
    """Per sample, the candidate numbers kept: ``keep[i]`` of them, hardest (or first) first.

    Parameters
    ----------
    losses : np.ndarray or None
        (N, k) losses (``hard``): kept by descending loss, ties by candidate number.
    order : np.ndarray or None
        (N, k) a random permutation per sample (``random``), used when ``losses`` is None.
    keep : np.ndarray
        (N,) int in 0..k.
    """
    ranked = np.argsort(-losses, axis=1, kind="stable") if losses is not None else order
    assert ranked is not None
    return [ranked[i, : int(keep[i])] for i in range(len(keep))]


def mine(
    images: np.ndarray,
    labels: np.ndarray,
    sample_ids: Sequence[str],
    model: nn.Module,
    transforms: Sequence[str],
    keep: np.ndarray,
    options: MiningOptions = MiningOptions(),
    flips: FlipSource | None = None,
) -> Mined:
    """Draw k keyed candidates per sample and transform; keep ``keep[i]`` of them.

    Parameters
    ----------
    images : np.ndarray
        (N, C, H, W) float32 in [0, 1], the kept samples.
    labels : np.ndarray
        (N,) int64.
    sample_ids : sequence of str
        (N,) ids; each keys its own candidates.
    model : nn.Module
        The reference model: logits (B, classes) from (B, C, H, W). Left in its mode.
    transforms : sequence of str
        Transform specs (robust_data.variants.make.parse_transform), the training schemes.
    keep : np.ndarray
        (N,) int m per sample and transform, 0..k (a plan's ``copies_per_sample``).
    flips : FlipSource, optional
        ``hard`` with ``include_flip``: the scoring that says which perturbation flipped each
        sample; a sample keeping at least one variant of the first transform keeps its flip.

    Returns
    -------
    Mined
        Each transform's kept variants, sample by sample, hardest first; a flipping
        perturbation right after its sample's kept candidates of the first transform.

    Raises
    ------
    RobustDataError
        When ``keep`` is not N counts in 0..k.
    """
    k = options.candidates
    counts = np.asarray(keep, np.int64)
    n = len(sample_ids)
    if counts.shape != (n,) or (counts < 0).any() or (counts > k).any():
        raise RobustDataError(
            f"keep: {n} counts in 0..{k} (candidates), one per sample",
            f"shape {counts.shape}, range {counts.min(initial=0)}..{counts.max(initial=0)}",
            "raise candidates or lower the copies per sample",
            options=("candidates", "copies"),
        )
    with_flip = options.mode == "hard" and options.include_flip and flips is not None
    # Losses run on an eval-mode, channels-last copy (the RPR engine's fast layout).
    scorer = working_copy(model, _device(model), True) if options.mode == "hard" else model
    parts: list[Mined] = []
    for position, spec in enumerate(parse_transform(t).spec for t in transforms):
        flip = flips if with_flip and position == 0 else None
        for start in range(0, n, options.batch_size):
            index = np.arange(start, min(n, start + options.batch_size))
            parts.append(
                _mine_batch(
                    images, labels, sample_ids, (model, scorer), spec, counts, index, options, flip
                )
            )
    mined = _concatenate(parts, images.shape[1:])
    trim_heap()  # the batches' heap memory, freed, returned before the caller trains on it
    return mined


def _mine_batch(
    images: np.ndarray,
    labels: np.ndarray,
    sample_ids: Sequence[str],
    models: tuple[nn.Module, nn.Module],
    spec: str,
    counts: np.ndarray,
    index: np.ndarray,
    options: MiningOptions,
    flips: FlipSource | None,
) -> Mined:
    """The kept variants of one transform for the samples ``index``.

    ``models`` is (the model, for attacks; its scoring copy, for losses).
    """
    model, scorer = models
    transform = parse_transform(spec)
    ids = [sample_ids[i] for i in index]
    x = torch.from_numpy(np.ascontiguousarray(images[index], np.float32))
    y = torch.from_numpy(np.asarray(labels[index], np.int64))
    draws = [
        apply_transform(transform, x, y, ids, copy_key(options.seed, j), model).clamp(0, 1)
        for j in range(options.candidates)
    ]
    candidates = torch.stack(draws, 1)  # (B, k, C, H, W)
    keep = counts[index].copy()
    if flips is not None:
        steps = np.asarray(flips.steps_to_flip, np.int64)[index]
        flipped = (steps > 0) & (keep > 0)
        keep[flipped] -= 1  # the flip takes the place of the lowest-loss kept candidate
    losses = None
    order = None
    if options.mode == "hard":
        losses = candidate_losses(scorer, candidates, y).numpy()
    else:
        order = random_order(ids, options.seed, options.candidates, spec)
    chosen = chosen_candidates(losses, order, keep)
    flip_images: dict[int, torch.Tensor] = {}
    flip_losses: dict[int, float] = {}
    if flips is not None and flipped.any():
        at = np.flatnonzero(flipped)
        for b in at.tolist():
            flip_images[b] = perturbed_at(x[b], ids[b], flips.scheme, flips.seed, int(steps[b]))
        stacked = torch.stack([flip_images[b] for b in at.tolist()])[:, None]
        losses_at = candidate_losses(scorer, stacked, y[at])[:, 0].tolist()
        flip_losses = dict(zip(at.tolist(), losses_at, strict=True))
    flip_spec = parse_transform(flips.scheme).spec if flips is not None else ""
    flip_seed = flips.seed if flips is not None else 0
    rows = _Rows()
    for b, picks in enumerate(chosen):
        for j in picks.tolist():
            suffix = f"~{j}" if j else ""
            loss = float(losses[b, j]) if losses is not None else float("nan")
            rows.add(candidates[b, j], index[b], spec, options.seed, j, 0, loss)
            rows.ids.append(f"{ids[b]}~{spec}~{options.seed}{suffix}")
        if b in flip_images:
            step = int(steps[b])
            rows.add(flip_images[b], index[b], flip_spec, flip_seed, -1, step, flip_losses[b])
            rows.ids.append(f"{ids[b]}~{flip_spec}~{flip_seed}~try{step}")
    return rows.mined(images.shape[1:])


class _Rows:
    """Accumulates kept variants for a :class:`Mined`."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.meta: list[tuple[int, str, int, int, int, float]] = []
        self.ids: list[str] = []

    def add(
        self, image: torch.Tensor, parent: int, spec: str, seed: int, j: int, step: int, loss: float
    ) -> None:
        self.images.append(image.detach().float().numpy())
        self.meta.append((int(parent), spec, seed, j, step, loss))

    def mined(self, shape: tuple[int, ...]) -> Mined:
        columns = list(zip(*self.meta, strict=True)) if self.meta else [()] * 6
        return Mined(
            images=np.stack(self.images) if self.images else np.zeros((0, *shape), np.float32),
            parent=np.asarray(columns[0], np.int64),
            transform=list(columns[1]),
            seed=np.asarray(columns[2], np.int64),
            candidate=np.asarray(columns[3], np.int64),
            step=np.asarray(columns[4], np.int64),
            loss=np.asarray(columns[5], np.float32),
            variant_ids=list(self.ids),
        )


def _stack_parts(arrays: list[np.ndarray]) -> np.ndarray:
    """``np.concatenate(arrays)`` that drops each part from ``arrays`` once copied.

    The caller's list is emptied, so a part's memory is free as soon as it is in the result:
    the peak is about the result plus one part, not twice the result (70,000 images mined
    about 400,000 variants, 1.2 GB of float32).
    """
    out = np.empty((sum(len(a) for a in arrays), *arrays[0].shape[1:]), arrays[0].dtype)
    start = 0
    arrays.reverse()
    while arrays:
        part = arrays.pop()
        out[start : start + len(part)] = part
        start += len(part)
        del part
    return out


def _concatenate(parts: list[Mined], shape: tuple[int, ...]) -> Mined:
    """One :class:`Mined` from batches, in order; empties ``parts`` (see :func:`_stack_parts`)."""
    if not parts:
        return _Rows().mined(shape)
    columns = {
        name: np.concatenate([getattr(p, name) for p in parts])
        for name in ("parent", "seed", "candidate", "step", "loss")
    }
    transform = [t for p in parts for t in p.transform]
    variant_ids = [v for p in parts for v in p.variant_ids]
    images = [p.images for p in parts]
    parts.clear()  # the images are now held by ``images`` alone, dropped as they are copied
    return Mined(
        images=_stack_parts(images), transform=transform, variant_ids=variant_ids, **columns
    )


def _as_pixels(images: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """(M, C, H, W) floats in [0, 1] as (M, H, W, C) uint8, a chunk of rows at a time (whole,
    the float temporaries were two more copies of the variants: 2.4 GB at 70,000 images)."""
    out = np.empty((len(images), *images.shape[2:], images.shape[1]), np.uint8)
    for start in range(0, len(images), chunk):
        part = np.clip(images[start : start + chunk], 0, 1) * 255
        out[start : start + len(part)] = part.round().astype(np.uint8).transpose(0, 2, 3, 1)
    return out


def mined_variants(
    mined: Mined,
    sample_ids: Sequence[str],
    labels: np.ndarray,
    splits: Sequence[str],
    names: Sequence[str],
    params: dict,
) -> Variants:
    """The variants table (:data:`VARIANTS_SCHEMA`) of mined variants.

    Parameters
    ----------
    sample_ids, labels, splits : sequences
        (N,) of the samples :func:`mine` was given.
    names : sequence of str
        Class names by label.
    params : dict
        Table parameters (the mining mode, k, seed, the flip's scheme and seed), stored in the
        table's metadata so that every row can be regenerated (see the module docs).
    """
    pixels = _as_pixels(mined.images)
    rows: dict[str, list] = {name: [] for name in VARIANTS_SCHEMA.names}
    examples: dict[str, list[tuple[np.ndarray, str]]] = {}
    for row, parent in enumerate(mined.parent.tolist()):
        transform = parse_transform(mined.transform[row])
        label = int(labels[parent])
        rows["variant_id"].append(mined.variant_ids[row])
        rows["parent_sample_id"].append(sample_ids[parent])
        rows["split"].append(str(splits[parent]))
        rows["transform"].append(transform.spec)
        rows["kind"].append(transform.kind)
        rows["severity"].append(transform.severity)
        rows["seed"].append(int(mined.seed[row]))
        rows["label"].append(label)
        rows["label_name"].append(names[label])
        rows["image"].append({"bytes": encode_png(pixels[row]), "path": None})
        shown = examples.setdefault(transform.spec, [])
        if len(shown) < 8:
            shown.append((mined.images[row], transform.spec[:14]))
    table = pa.table(rows, schema=VARIANTS_SCHEMA)
    table = table.replace_schema_metadata(table_metadata("variants", "raw_samples", params))
    return Variants(table, examples)
