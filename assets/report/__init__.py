"""Dagster assets of the report group."""
