"""Dagster assets of the ingest group."""
