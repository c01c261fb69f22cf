"""The editreward_bench_4 task folder (YAML, builder, README)."""
