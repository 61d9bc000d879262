"""The home and its Parquet store: layout, schemas, table checks, the writer lock, safe targets."""
