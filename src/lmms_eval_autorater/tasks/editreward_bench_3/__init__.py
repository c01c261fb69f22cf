"""The editreward_bench_3 task folder (YAML, builder, README)."""
