"""Judge core: prompts, backends, output contract and parser, concurrency, retries, cache.

Knows nothing of lmms-eval; the wrappers in ``lmms_eval_autorater.models`` adapt it.
"""
