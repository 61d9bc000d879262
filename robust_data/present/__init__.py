"""Presentation helpers shared by the stages: plots, Markdown snippets, progress lines."""
