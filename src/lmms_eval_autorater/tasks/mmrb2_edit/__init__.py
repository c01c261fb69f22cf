"""The mmrb2_edit task folder (YAML, builder, README)."""
