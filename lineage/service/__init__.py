"""Lineage service: ingestion-side logic (validation, ...)."""
