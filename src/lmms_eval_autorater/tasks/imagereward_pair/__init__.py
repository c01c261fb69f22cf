"""The imagereward_pair task folder (YAML, builder, README)."""
