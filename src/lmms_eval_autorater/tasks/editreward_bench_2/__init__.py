"""The editreward_bench_2 task folder (YAML, builder, README)."""
