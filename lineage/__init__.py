"""chaintrace lineage service: ingest OpenLineage events, keep them, answer lineage graph queries."""
