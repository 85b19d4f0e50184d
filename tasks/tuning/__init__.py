"""Tuning from reviewed labels: per-category detector thresholds, and prompt comparison."""
