"""Stage 5, curation: the policy that keeps or drops samples, its presets, human reviews."""
