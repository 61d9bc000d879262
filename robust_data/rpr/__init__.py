"""RPR (Randomized Perturbation Robustness): counter-based noise and perturbation schemes.

Work in progress for the RPR issue: the engine and the assets come next. What is here is
complete and tested on its own: noise keyed by (seed, sample, step) that is identical on any
device and in any batch, and the paper's perturbation schemes.
"""

from robust_data.rpr.rng import sample_keys, uniform
from robust_data.rpr.schemes import PerturbationScheme, Scheme, parse_scheme

__all__ = ["PerturbationScheme", "Scheme", "parse_scheme", "sample_keys", "uniform"]
