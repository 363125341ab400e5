"""The lineage store: raw events (append-only) and the graph derived from them."""
