"""The four AutoRater benchmarks as lmms-eval tasks, one folder each (YAML, utils.py, README).

Docs share one schema (see ``common.DOC_FIELDS``) so that every judge and baseline reads
the same structured fields; images are lazy references (``lmms_eval_autorater.images``).
"""
