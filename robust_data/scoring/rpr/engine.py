"""The batched RPR engine: many datapoints and many tries in each forward pass.

RPR (the paper's definition): for a datapoint (x, y) and a model M, perturb the ORIGINAL x
again and again; the score is the number of the first try whose prediction is not y, capped
at ``max_steps``; a point that survives every try is robust.

How it is made cheap: every sample in the work pool gets a window of consecutive tries; all
windows of the pool go through the model in one batch; a sample that flips leaves the pool at
once (its tries after the flip in that window are the only wasted work) and its place is
refilled from the queue; a survivor's window doubles, up to ``max_window``, so robust points
run long windows and early flippers short ones. Try t of sample s always sees the same noise
(drawn from (seed, s, t)), so scores do not depend on batch size, order or device.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from robust_data.defaults import MAX_STEPS
from robust_data.errors import RobustDataError
from robust_data.perturb.rng import sample_keys
from robust_data.perturb.schemes import PerturbationScheme, parse_scheme
from robust_data.present.progress import progress_bar
from robust_data.scoring.device import autocast, resolve_device, resolve_precision
from robust_data.scoring.spec import copy_module

#: Images per forward pass on the CPU (see ``RprOptions.forward_rows``).
CPU_FORWARD_ROWS = 256
COMPILE_MODES = ("auto", "on", "off")
#: Below this many tries (N * max_steps) ``compile="auto"`` stays eager: a compile costs
#: about as much as 20,000 eager forward passes of the paper's CNN on a 2-core CPU.
COMPILE_MIN_TRIES = 100_000


@dataclass(frozen=True)
class RprOptions:
    """How to score.

    Attributes
    ----------
    scheme : str
        Perturbation spec (``pixels``, ``pixels(k=28)``, ``gaussian(sigma=0.1)``,
        ``salt_pepper(p=0.05)``).
    max_steps : int
        Tries per datapoint; >= 1. The paper's MAX_STEPS is 250.
    seed : int
        Seed of the perturbations.
    device : str
        ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``.
    precision : str
        ``auto`` (bf16 autocast where the hardware has bf16 matrix units), ``fp32``, ``bf16``.
    batch_size : int
        Perturbed images per round of the engine; bounds memory (about
        ``batch_size * C * H * W * 4`` bytes for the perturbed images).
    forward_rows : int, optional
        Images per forward pass: a round runs through the model in slices of this many, so
        activations stay small enough to stay in cache and to be reused by the allocator
        instead of being mapped afresh (on the paper's CNN on a CPU, 256 ran 2x faster than
        1024). Default: 256 on the CPU, ``batch_size`` on CUDA.
    first_window, max_window : int
        Tries given to a sample in its first round, and the most it gets in any round.
    channels_last : bool
        Run convolutions in channels-last memory layout (faster on CPUs and tensor cores).
    compile : str
        ``on``: compile the model with ``torch.compile`` (inductor, frozen weights) and run
        every forward pass padded to ``forward_rows``, so all passes use one compiled kernel
        set; ``off``: eager PyTorch; ``auto`` (default): on when the work is large enough to
        repay the compile (N * max_steps >= 100,000). A failed compile falls back to eager
        with a warning. A TorchScript model is never compiled (it runs as scripted).
    """

    scheme: str = "pixels"
    max_steps: int = MAX_STEPS
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 4096
    forward_rows: int | None = None
    first_window: int = 4
    max_window: int = 64
    channels_last: bool = True
    compile: str = "auto"

    def __post_init__(self) -> None:
        if self.compile not in COMPILE_MODES:
            raise RobustDataError(
                f"compile in {COMPILE_MODES}",
                repr(self.compile),
                "pass one of those",
                options=("compile",),
            )
        for name in ("max_steps", "batch_size", "forward_rows", "first_window", "max_window"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise RobustDataError(
                    f"{name} >= 1", str(getattr(self, name)), "pass 1 or more", options=(name,)
                )
        parse_scheme(self.scheme)


@dataclass
class RprResult:
    """Scores of N datapoints, row-aligned with the input.

    Attributes
    ----------
    clean_pred : np.ndarray
        (N,) int64, the model's prediction on the unperturbed image.
    clean_correct : np.ndarray
        (N,) bool, ``clean_pred == label``.
    steps_to_flip : np.ndarray
        (N,) int64 in 1..max_steps, the first try whose prediction is not the label; 0 where
        the datapoint survived every try (robust). Low means fragile.
    flip_pred : np.ndarray
        (N,) int64, the prediction at that try; -1 where robust.
    scheme : str
        Canonical spec of the perturbation.
    max_steps, seed : int
    device, precision : str
        Where and how it ran.
    tries : int
        Perturbed forward passes the definition requires: sum of min(steps_to_flip, max_steps).
    computed : int
        Forward passes actually run beyond the clean pass: ``tries``, plus tries after a flip
        in a window, plus padding rows of compiled batches.
    seconds : float
        Wall time, clean pass included.
    """

    clean_pred: np.ndarray
    clean_correct: np.ndarray
    steps_to_flip: np.ndarray
    flip_pred: np.ndarray
    scheme: str
    max_steps: int
    seed: int
    device: str
    precision: str
    tries: int
    computed: int
    seconds: float

    @property
    def robust(self) -> np.ndarray:
        """(N,) bool: survived all ``max_steps`` tries."""
        return self.steps_to_flip == 0


def _check_inputs(
    images: torch.Tensor, labels: torch.Tensor, sample_ids: Sequence[str], num_classes: int
) -> None:
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W); found {tuple(images.shape)}")
    n = images.shape[0]
    if labels.shape != (n,) or len(sample_ids) != n:
        raise ValueError(
            f"expected {n} labels and {n} sample ids for {n} images; found "
            f"{tuple(labels.shape)} labels and {len(sample_ids)} ids"
        )
    if n and bool(torch.isnan(images).any() or images.min() < 0 or images.max() > 1):
        low, high = float(images.nan_to_num(-1.0).min()), float(images.nan_to_num(2.0).max())
        raise RobustDataError(
            "image values in [0, 1]", f"{low:g}..{high:g}", "divide uint8 pixels by 255"
        )
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise RobustDataError(
            f"labels in [0, {num_classes})",
            f"{int(labels.min())}..{int(labels.max())}",
            "pass the class count the labels need",
        )


class ModelRunner:
    """Runs the model in slices of ``forward_rows``: eager, or compiled with frozen weights.

    Compiled, every slice is padded to ``forward_rows`` so all passes use one kernel set.
    """

    def __init__(self, model: nn.Module, options: RprOptions, compiled: bool):
        self.model = model
        cuda = next(model.parameters(), torch.zeros(0)).device.type == "cuda"
        self.rows = options.forward_rows or (options.batch_size if cuda else CPU_FORWARD_ROWS)
        self.channels_last = options.channels_last
        scripted = isinstance(model, torch.jit.ScriptModule)  # runs as scripted, never compiled
        self.compiled = torch.compile(model, dynamic=False) if compiled and not scripted else None
        self.padded = 0  # padding rows run so far

    def close(self) -> None:
        """Drop the compiled code of the model's class.

        Dynamo keeps one cache entry per compiled model on the class's ``forward`` and falls
        back to eager for good after ``recompile_limit`` (8) of them, so a process that
        compiles many models (a whole job in one process) must drop each when done.
        """
        if self.compiled is not None:
            torch._dynamo.reset_code(type(self.model).forward.__code__)
            self.compiled = None

    def eager(self, batch: torch.Tensor) -> torch.Tensor:
        """The model in eager mode, any batch size, in slices."""
        return self._sliced(batch, self._eager_slice)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self._sliced(batch, self._slice)

    def _sliced(self, batch: torch.Tensor, run) -> torch.Tensor:
        if batch.shape[0] <= self.rows:
            return run(batch)
        return torch.cat([run(batch[s : s + self.rows]) for s in range(0, len(batch), self.rows)])

    def _eager_slice(self, batch: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self.model(batch)

    def _slice(self, batch: torch.Tensor) -> torch.Tensor:
        if self.compiled is None:
            return self._eager_slice(batch)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        rows = batch.shape[0]
        pad = self.rows - rows
        if pad:
            filler = batch[:1].expand(pad, *batch.shape[1:])
            batch = torch.cat([batch, filler]).contiguous(memory_format=batch_format(batch))
        import torch._inductor.config as inductor_config  # 1 s to import: only when compiling

        try:
            with inductor_config.patch(freezing=True):
                out = self.compiled(batch)[:rows]
        except Exception as exc:  # inductor needs a C++ toolchain; eager always works
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            warnings.warn(
                f"torch.compile failed ({first}); scoring goes on in eager mode", stacklevel=2
            )
            self.compiled = None
            return self._eager_slice(batch[:rows])
        self.padded += pad
        return out


def working_copy(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """A copy of ``model`` on ``device`` in eval mode (channels-last if asked); the caller's
    model is not moved or changed."""
    copied = copy_module(model).to(device).eval()
    return copied.to(memory_format=torch.channels_last) if channels_last else copied


def batch_format(batch: torch.Tensor) -> torch.memory_format:
    """channels_last when ``batch`` is laid out so, else contiguous."""
    is_cl = batch.dim() == 4 and batch.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if is_cl else torch.contiguous_format


def _check_model(model: nn.Module, sample: torch.Tensor, num_classes: int) -> None:
    """One eager forward pass on (1, C, H, W): the model must accept it and output K scores."""
    try:
        logits = model(sample)
    except RuntimeError as exc:
        raise RobustDataError(
            "images the model accepts",
            f"shape {tuple(sample.shape[1:])} rejected by the model ({str(exc).splitlines()[0]})",
            "score with a model trained on images of this dataset",
        ) from None
    if logits.dim() != 2 or logits.shape[1] != num_classes:
        raise RobustDataError(
            f"model output of width {num_classes} (the class count)",
            f"shape {tuple(logits.shape)}",
            "score with a model trained on the classes of this dataset",
        )


def _clean_predictions(
    run: ModelRunner, images: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """Predictions on the unperturbed images (eager: N passes are not worth padding)."""
    out = [
        run.eager(images[start : start + run.rows].to(device)).argmax(dim=1)
        for start in range(0, images.shape[0], run.rows)
    ]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64, device=device)


class _Pool:
    """The samples being scored now: their index, next try, window and originals on device."""

    def __init__(
        self, device: torch.device, image_shape: tuple[int, ...], channels_last: bool = False
    ):
        self.index = torch.zeros(0, dtype=torch.int64, device=device)
        self.next_step = torch.zeros(0, dtype=torch.int64, device=device)
        self.window = torch.zeros(0, dtype=torch.int64, device=device)
        self.images = torch.zeros((0, *image_shape), device=device)
        #: Originals kept channels-last when the model runs so: gathering and perturbing keep
        #: the layout, so a round's batch needs no conversion before the model (on 3-channel
        #: images that copy was a tenth of the engine's time).
        self.layout = torch.channels_last if channels_last else torch.contiguous_format

    def add(self, index: torch.Tensor, images: torch.Tensor, window: int) -> None:
        ones = torch.ones_like(index)
        self.index = torch.cat([self.index, index])
        self.next_step = torch.cat([self.next_step, ones])
        self.window = torch.cat([self.window, ones * window])
        self.images = torch.cat([self.images, images]).contiguous(memory_format=self.layout)

    def keep(self, mask: torch.Tensor) -> None:
        self.index, self.next_step = self.index[mask], self.next_step[mask]
        self.window, self.images = self.window[mask], self.images[mask]


def score_rpr(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    sample_ids: Sequence[str],
    num_classes: int,
    options: RprOptions | None = None,
    progress: bool = True,
) -> RprResult:
    """Score every datapoint's RPR with the batched engine.

    Parameters
    ----------
    model : nn.Module
        Maps (B, C, H, W) to (B, num_classes) logits (or any scores whose argmax is the class).
        Not modified: the engine works on a copy.
    images : array or tensor
        (N, C, H, W) float in [0, 1], the originals.
    labels : array or tensor
        (N,) int in [0, num_classes), the given labels y.
    sample_ids : sequence of str
        (N,) ids; each keys its own noise.
    num_classes : int
    options : RprOptions, optional
    progress : bool
        Show a progress bar over datapoints.

    Returns
    -------
    RprResult

    Raises
    ------
    RobustDataError
        Values outside [0, 1], labels out of range, a model that refuses the images or
        outputs other than ``num_classes`` scores, or an unknown scheme.
    ValueError
        Images, labels and sample ids of shapes that do not match.
    """
    options = options or RprOptions()
    scheme = parse_scheme(options.scheme)
    images_t = torch.as_tensor(images, dtype=torch.float32)
    labels_t = torch.tensor(np.asarray(labels), dtype=torch.int64)
    _check_inputs(images_t, labels_t, sample_ids, num_classes)
    device = resolve_device(options.device)
    precision = resolve_precision(options.precision, device)
    started = time.perf_counter()
    model = working_copy(model, device, options.channels_last)
    n = images_t.shape[0]
    steps_to_flip = torch.zeros(n, dtype=torch.int64, device=device)
    flip_pred = torch.full((n,), -1, dtype=torch.int64, device=device)
    keys = sample_keys(list(sample_ids), device=device)
    labels_d = labels_t.to(device)
    compiled = options.compile == "on" or (
        options.compile == "auto" and n * options.max_steps >= COMPILE_MIN_TRIES
    )
    with torch.inference_mode(), autocast(device, precision):
        if n:
            _check_model(model, images_t[:1].to(device), num_classes)
        run = ModelRunner(model, options, compiled)
        try:
            clean, tries, computed = _score_all(
                run, scheme, images_t, labels_d, keys, steps_to_flip, flip_pred, options, progress
            )
        finally:
            run.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return RprResult(
        clean_pred=clean.cpu().numpy(),
        clean_correct=(clean == labels_d).cpu().numpy(),
        steps_to_flip=steps_to_flip.cpu().numpy(),
        flip_pred=flip_pred.cpu().numpy(),
        scheme=scheme.spec,
        max_steps=options.max_steps,
        seed=options.seed,
        device=str(device),
        precision=precision,
        tries=tries,
        computed=computed,
        seconds=time.perf_counter() - started,
    )


def _score_all(
    run: ModelRunner,
    scheme: PerturbationScheme,
    images_t: torch.Tensor,
    labels_d: torch.Tensor,
    keys: torch.Tensor,
    steps_to_flip: torch.Tensor,
    flip_pred: torch.Tensor,
    options: RprOptions,
    progress: bool,
) -> tuple[torch.Tensor, int, int]:
    """Clean predictions, then every datapoint's tries in pooled rounds.

    Fills ``steps_to_flip`` and ``flip_pred`` (N,) in place.

    Returns
    -------
    (clean predictions (N,), tries the definition needed, forward passes computed)
    """
    device, n = labels_d.device, images_t.shape[0]
    tries = computed = 0
    clean = _clean_predictions(run, images_t, device)
    pool = _Pool(device, tuple(images_t.shape[1:]), options.channels_last)
    queued = 0
    bar = progress_bar(
        total=n,
        desc=f"rpr {scheme.spec}",
        unit="pt",
        mininterval=0.5,
        disable=not progress,
    )
    while queued < n or pool.index.numel():
        budget = options.batch_size - int(
            torch.clamp(pool.window, max=options.max_steps - pool.next_step + 1).sum()
        )
        window = min(options.first_window, options.max_steps)
        take = min(n - queued, max(budget // window, 0 if pool.index.numel() else 1))
        if take:
            index = torch.arange(queued, queued + take, device=device)
            pool.add(index, images_t[queued : queued + take].to(device), window)
            queued += take
        done, flips, used, ran = _round(run, scheme, pool, keys, labels_d, options, queued == n)
        steps_to_flip[pool.index[flips[0]]] = flips[1]
        flip_pred[pool.index[flips[0]]] = flips[2]
        tries, computed = tries + used, computed + ran
        bar.update(int(done.sum()))
        pool.keep(~done)
    bar.close()
    return clean, tries, computed + run.padded


def _round(
    run: ModelRunner,
    scheme: PerturbationScheme,
    pool: _Pool,
    keys: torch.Tensor,
    labels: torch.Tensor,
    options: RprOptions,
    fill: bool,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor], int, int]:
    """Run one window of tries for every pooled sample in one forward pass.

    With ``fill`` (the queue is empty) the survivors' windows grow to fill the batch.

    Returns
    -------
    done : (P,) bool, samples that flipped or reached ``max_steps``
    flips : (pool positions, steps_to_flip, flip_pred) of the samples that flipped
    used, ran : tries the definition needed, tries computed
    """
    device = pool.index.device
    remaining = options.max_steps - pool.next_step + 1
    width = torch.clamp(pool.window, max=remaining)  # (P,)
    if fill:
        width = _fill(width, remaining, options.batch_size)
    # Memory bound: windows laid end to end are cut at batch_size; samples past the cut wait.
    start = torch.cumsum(width, 0) - width
    width = torch.clamp(torch.minimum(width, options.batch_size - start), min=0)
    fits = width > 0
    owner = torch.repeat_interleave(torch.arange(width.numel(), device=device), width)  # (M,)
    offsets = torch.cumsum(width, 0) - width
    local = torch.arange(owner.numel(), device=device) - offsets[owner]  # 0-based try in window
    steps = pool.next_step[owner] + local
    perturbed = scheme.apply(
        pool.images[owner], options.seed, keys[pool.index[owner]], steps[:, None]
    ).squeeze(1)
    predictions = run(perturbed).argmax(dim=1)
    flipped = predictions != labels[pool.index[owner]]
    big = torch.iinfo(torch.int64).max
    first = torch.full_like(width, big).scatter_reduce(
        0, owner, torch.where(flipped, local, big), reduce="amin"
    )
    hit = first != big
    positions = torch.nonzero(hit).squeeze(1)
    flips = (positions, pool.next_step[hit] + first[hit], predictions[offsets[hit] + first[hit]])
    used = int(torch.where(hit, first + 1, width).sum())
    pool.next_step = pool.next_step + width
    pool.window = torch.where(
        fits, torch.clamp(pool.window * 2, max=options.max_window), pool.window
    )
    done = hit | (pool.next_step > options.max_steps)
    return done, flips, used, owner.numel()


def _fill(width: torch.Tensor, remaining: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Widen unfinished windows so the batch is as full as the remaining tries allow."""
    for _ in range(4):
        spare = batch_size - int(width.sum())
        growable = width < remaining
        count = int(growable.sum())
        if count == 0 or spare < count:
            break
        width = torch.where(growable, torch.minimum(width + spare // count, remaining), width)
    return width


def score_rpr_loop(
    model: nn.Module,
    image: torch.Tensor,
    label: int,
    sample_id: str,
    scheme: str = "pixels",
    seed: int = 0,
    max_steps: int = MAX_STEPS,
) -> tuple[int, int]:
    """The paper's algorithm, one image and one forward pass per try (verification baseline).

    Parameters
    ----------
    model : nn.Module
        Called as is (the caller picks device, precision and eval mode).
    image : torch.Tensor
        (C, H, W) float in [0, 1] on the model's device.

    Returns
    -------
    (steps_to_flip, flip_pred)
        ``steps_to_flip`` in 1..max_steps, or 0 when it survived; ``flip_pred`` -1 then.
    """
    spec = parse_scheme(scheme)
    for step in range(1, max_steps + 1):
        perturbed = perturbed_at(image, sample_id, spec, seed, step)[None]
        prediction = int(model(perturbed).argmax(dim=1)[0])
        if prediction != label:
            return step, prediction
    return 0, -1


def perturbed_at(
    image: torch.Tensor,
    sample_id: str,
    scheme: str | PerturbationScheme,
    seed: int,
    step: int,
) -> torch.Tensor:
    """The image RPR scoring perturbed at try ``step`` (1-based) of ``sample_id``, regenerated.

    The noise is keyed by (seed, sample key, try), so this is the exact image the engine fed
    the model at that try: ``steps_to_flip`` gives the one that flipped it.

    Parameters
    ----------
    image : torch.Tensor
        (C, H, W) float in [0, 1], the original.

    Returns
    -------
    torch.Tensor
        (C, H, W) in [0, 1], dtype and device of ``image``.
    """
    spec = parse_scheme(scheme) if isinstance(scheme, str) else scheme
    key = sample_keys([sample_id], device=image.device)
    tries = torch.tensor([[step]], device=image.device)
    return spec.apply(image[None], seed, key, tries)[0, 0]
