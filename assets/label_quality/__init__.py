"""Dagster assets of the label_quality group."""
