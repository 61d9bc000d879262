"""Exploring: read-only SQL over the tables and the sample index behind the browser."""
