"""The psr task folder (YAML, builder, README)."""
