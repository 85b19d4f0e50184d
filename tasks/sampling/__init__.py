"""Uncertainty sampling: the images most worth reviewing within a budget, saved and exported."""
