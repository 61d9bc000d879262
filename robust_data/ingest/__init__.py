"""Stage 1, ingest: dataset sources, validation, splits, image codecs and decoding to arrays."""
