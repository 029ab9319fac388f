"""The Parquet data layer: schemas, catalog, validation, importers, ingest, sample data."""
