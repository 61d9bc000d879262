"""Dagster assets of the variants group."""
