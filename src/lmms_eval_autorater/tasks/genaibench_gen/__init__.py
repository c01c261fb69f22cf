"""The genaibench_gen task folder (YAML, builder, README)."""
