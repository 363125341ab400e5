"""HTTP layer of the lineage service: routes only; they call services from the context."""
