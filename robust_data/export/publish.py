"""Publish a finished local export to an fsspec URL (``<store URL>/exports/<dataset>``)."""

from __future__ import annotations

import json
from dataclasses import replace

from robust_data.export.result import ExportResult
from robust_data.io.publish import publish_folder

#: Published after every other file of an export, in this order: ``lineage.json`` (the sha256
#: of every other file) is the marker that the export is complete.
PUBLISHED_LAST = ("README.md", "lineage.json")


def publish_export(result: ExportResult, url: str) -> ExportResult:
    """Upload a local export to an fsspec URL prefix; the result names the URL.

    Every data file and plot goes up first, one object each, then ``README.md``, then
    ``lineage.json``; objects under ``url`` that this export does not hold are deleted last
    (see :func:`robust_data.io.publish.publish_folder`). A reader can rely on each object being
    whole and on ``lineage.json`` being written after every file it lists; a reader that opens
    the export while a new one is uploading may see new data files with the old
    ``lineage.json`` (check the files' sha256 against it), and, until the upload ends, files
    the new export no longer has.

    Parameters
    ----------
    result : ExportResult
        A local export (:func:`~robust_data.export.export.export_dataset`); its folder is
        left as it is.
    url : str
        Where to publish it: ``<store URL>/exports/<dataset>`` (:meth:`Store.export_location`).

    Returns
    -------
    ExportResult
        ``result`` with ``location`` set to ``url`` and the files' sha256 from its lineage.
    """
    lineage = json.loads((result.path / "lineage.json").read_text(encoding="utf-8"))
    publish_folder(result.path, url, last=PUBLISHED_LAST)
    return replace(result, location=url.rstrip("/"), hashes=dict(lineage["files"]))
