"""Stage 4, variants: corrupted, augmented and adversarial copies of samples."""
