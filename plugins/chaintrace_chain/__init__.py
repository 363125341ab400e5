"""chaintrace_chain: the public-data chain that runs inside Airflow.

Dataset specs, stage transforms, the collect stage, Great Expectations gates, OpenLineage facet
builders, the stage operators and the DAG factory. Everything here is importable and testable without
a running Airflow; only ``operators`` and ``dag_factory`` import Airflow, and only lazily heavy libraries
(pandas, GX) are imported inside task code, never at DAG parse time.
"""
