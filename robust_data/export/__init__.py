"""Stage 7, export: curated datasets as Parquet or ImageFolder with a card and lineage."""
