"""RPR (Randomized Perturbation Robustness): the batched engine, the table, its figures.

The noise and the perturbation schemes the engine applies live in :mod:`robust_data.perturb`.
"""
