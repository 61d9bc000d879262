"""Dagster assets of the curation group."""
