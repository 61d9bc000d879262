"""The home and its Parquet store: layout, the Store and its dataset registry, schemas, table
checks, the writer lock, safe targets. Stage-free: the store imports no stage."""
