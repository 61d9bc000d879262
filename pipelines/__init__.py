"""Dagster wiring: Definitions, jobs, resources and IO managers. Loaded via ``workspace.yaml``."""
