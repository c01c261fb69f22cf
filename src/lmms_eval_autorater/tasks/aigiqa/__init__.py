"""The aigiqa task folder (YAML, builder, README)."""
