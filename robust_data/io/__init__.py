"""Files at a local path or an fsspec URL: reads, atomic writes, Parquet tables, publishing.

Framework-free and stage-free: nothing here imports the rest of robust_data. Every function
takes a *location*, a local path or an fsspec URL (``s3://bucket/key``, ``memory://...``), and
treats both alike; only a local write differs, done atomically (a temporary file beside the
target, renamed over it) where an object store publishes one put whole or not at all.

- :mod:`robust_data.io.files`: bytes at a location (read, write, exists, sha256, remove, list).
- :mod:`robust_data.io.parquet`: Parquet tables at a location.
- :mod:`robust_data.io.atomic`: local atomic writes, the umask, and killed writers' temporaries.
- :mod:`robust_data.io.publish`: mirror a local folder to a URL prefix.
"""
