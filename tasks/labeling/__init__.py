"""Labeling: list and register a job's images, label them shard by shard, record the run."""
