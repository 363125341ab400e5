"""Benchmarks of the lineage service: ``python -m bench [ingest|graph|rebuild] [--quick]``.

Each benchmark measures its figures and a baseline (or floor) in the same run, prints PASS/MISS per
target of the issue, and merges its section into ``bench/results/latest.json``.
``python -m bench.readme_table`` renders that file as the README's results table.
"""
