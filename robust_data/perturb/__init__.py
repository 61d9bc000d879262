"""Seeded perturbations shared by scoring, variants and the report.

Counter-based noise (rng), the RPR perturbation schemes (schemes) and the corruption library
(corrupt), each drawn from keys, never from a global generator.
"""
