"""`make bench`: throughput of the batch endpoint and the worker, each beside a baseline measured
in the same run (pgbench, a no-op Celery drain), reported as ratios over several repetitions."""
