"""Specialists: models that each measure one thing about an image, behind one interface."""
