"""The user's own generations: score a file of images, rank generators in an arena (no lmms-eval inside)."""
