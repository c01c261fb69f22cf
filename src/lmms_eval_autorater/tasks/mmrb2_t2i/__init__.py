"""The mmrb2_t2i task folder (YAML, builder, README)."""
