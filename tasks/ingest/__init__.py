"""Ingest: SA-1B training shards from a local folder into object storage."""
