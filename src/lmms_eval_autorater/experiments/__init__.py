"""Experiments: commands that run judges over benchmarks (grid, ablation, reproduce, estimate's command).

Commands floor: they build judges through ``judges.factory`` and run the one evaluation loop.
"""
