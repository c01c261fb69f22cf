"""The genaibench_edit task folder (YAML, builder, README)."""
