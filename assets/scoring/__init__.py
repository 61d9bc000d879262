"""Dagster assets of the scoring group."""
