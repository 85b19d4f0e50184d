"""Exports: a dataset as COCO JSON with overlays, or as SA-1B shards for retraining."""
