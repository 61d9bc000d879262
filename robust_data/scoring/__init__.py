"""Stage 2, scoring: compute device, reference models, and RPR scores per datapoint."""
