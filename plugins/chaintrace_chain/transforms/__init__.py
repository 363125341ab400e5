"""Stage transforms, one module per dataset (named by the spec's ``transforms`` key).

Each dataset module defines four pure functions over pandas frames (no I/O besides reading the landed
files in ``store``, no Airflow):

    store(spec, landed: dict[source_key, Path]) -> StageOutput      # usually common.store_tables
    process(spec, raw: dict[table, DataFrame]) -> StageOutput
    analyze(spec, processed: dict[table, DataFrame]) -> StageOutput
    serve(spec, analysis: dict[table, DataFrame]) -> StageOutput    # usually common.serve_products

``StageOutput.lineage`` maps every output column to the input columns it derives from. Levels: a
transform declares a level in ``StageOutput.levels`` only where it lowers sensitivity on purpose;
everywhere else the stage runner propagates the highest level of the input columns. A declared level
applies only across edges that lower (``masking=True``, or any edge into a serve product measured as a
k-safe aggregate); declaring less than the other edges carry is a policy violation: the runner keeps
the higher level and reports it (see ``chaintrace_chain.governance``).
"""
