"""Learning to judge: training sources (train splits), rationale synthesis (E-step) and SFT (M-step)."""
