"""The imagereward_point task folder (YAML, builder, README)."""
