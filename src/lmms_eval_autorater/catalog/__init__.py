"""Ground-floor catalogs: the facts every floor reads (models, checkpoints, the paper's numbers).

Nothing here imports a model, torch, lmms-eval or any other module of this package: the catalogs are
data and small readers of data, so the judges, the specialists, the baselines, the lmms-eval models and
the commands can all import them.
"""
