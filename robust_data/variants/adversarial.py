"""Adversarial variants against a model: FGSM and PGD under an L-infinity budget."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from robust_data.errors import RobustDataError
from robust_data.perturb.rng import purpose_key, sample_keys, uniform

_SPEC = re.compile(r"^\s*(fgsm|pgd)\s*(?:\((.*)\))?\s*$")


@dataclass(frozen=True)
class Attack:
    """An L-infinity attack.

    Attributes
    ----------
    name : str
        ``fgsm`` (one signed-gradient step of size ``eps``) or ``pgd`` (``steps`` steps of
        size ``alpha`` from a random start in the ``eps`` ball, projected back each step).
    eps : float
        Budget in [0, 1] pixel units (0 < eps <= 1).
    steps : int
    alpha : float
        PGD step size; default 2.5 * eps / steps.
    """

    name: str
    eps: float
    steps: int = 1
    alpha: float = 0.0

    @property
    def spec(self) -> str:
        if self.name == "fgsm":
            return f"fgsm(eps={self.eps:g})"
        return f"pgd(eps={self.eps:g}, steps={self.steps}, alpha={self.alpha:g})"


def parse_attack(spec: str) -> Attack:
    """Parse ``fgsm(eps=0.1)`` or ``pgd(eps=0.1, steps=10[, alpha=0.025])``.

    Raises
    ------
    RobustDataError
        One line, for anything else.
    """
    match = _SPEC.match(spec)
    if not match:
        raise RobustDataError(
            "fgsm(eps=F) or pgd(eps=F, steps=N)", repr(spec), "write the attack as one of those"
        )
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in (match.group(2) or "").split(","))):
        key, _, raw = part.partition("=")
        try:
            values[key.strip()] = float(raw)
        except ValueError:
            raise RobustDataError(
                f"a number for {key.strip()} in {spec!r}", repr(raw), "write a number"
            ) from None
    eps = values.get("eps", 0.1)
    steps = int(values.get("steps", 1 if match.group(1) == "fgsm" else 10))
    if not 0 < eps <= 1 or steps < 1 or set(values) - {"eps", "steps", "alpha"}:
        raise RobustDataError(
            "0 < eps <= 1, steps >= 1 and only eps, steps, alpha",
            repr(spec),
            "e.g. pgd(eps=0.1, steps=10)",
        )
    alpha = values.get("alpha", 2.5 * eps / steps if match.group(1) == "pgd" else eps)
    return Attack(match.group(1), eps, steps, alpha)


def attack(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    spec: str,
    seed: int = 0,
    sample_ids: Sequence[str] | None = None,
) -> torch.Tensor:
    """Adversarial images (N, C, H, W) in [0, 1] within ``eps`` of ``images`` (L-infinity).

    The loss is cross-entropy against ``labels`` (N,); PGD's random start is drawn from the
    counter-based generator keyed by (seed, sample_id), so it is reproducible per sample.
    Runs in fp32 on the images' device; the model is put in eval mode and not modified.
    """
    att = parse_attack(spec)
    model = model.eval()
    x0 = images.detach().float()
    y = torch.as_tensor(labels, device=x0.device, dtype=torch.int64)
    x = x0.clone()
    if att.name == "pgd":
        ids = list(sample_ids) if sample_ids is not None else [str(i) for i in range(len(x0))]
        keys = sample_keys(ids, device=x0.device) ^ purpose_key(f"attack:{att.spec}")
        u = uniform(seed, keys, torch.zeros(1, dtype=torch.int64, device=x0.device), x0[0].numel())
        x = (x0 + (u[:, 0].view_as(x0) * 2 - 1) * att.eps).clamp(0, 1)
    for _ in range(att.steps):
        x.requires_grad_(True)
        with torch.enable_grad():
            loss = nn.functional.cross_entropy(model(x), y)
            (grad,) = torch.autograd.grad(loss, x)
        step = att.eps if att.name == "fgsm" else att.alpha
        x = x.detach() + step * grad.sign()
        x = torch.minimum(torch.maximum(x, x0 - att.eps), x0 + att.eps).clamp(0, 1)
    return x.detach().to(images.dtype)
