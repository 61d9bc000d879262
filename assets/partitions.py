"""The partitions every asset shares: one per dataset name.

The CLI (pipelines.cli.launch) and the inbox sensor (pipelines.automation) add them; every
asset group imports them from here, so no group imports another.
"""

from dagster import DynamicPartitionsDefinition

#: ``DATASETS_NAME`` for the instance's partition calls (``DATASETS.name`` is ``str | None``).
DATASETS_NAME = "datasets"
DATASETS = DynamicPartitionsDefinition(name=DATASETS_NAME)
