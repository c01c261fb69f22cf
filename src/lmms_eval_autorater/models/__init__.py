"""Thin lmms-eval model wrappers: docs in, the judge (or a baseline) runs, verdict envelopes out."""
