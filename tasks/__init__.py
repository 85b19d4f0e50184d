"""The work units flows orchestrate, one subpackage per capability.

Each capability has plain-Python cores (no Prefect; they compose `autolabel.models` and
`autolabel.storage` and take a `Resources` object explicitly) and one `*_tasks.py` module of thin
Prefect `@task` wrappers:

- `labeling/`: a job's images, shards through detector + segmenter into the database
  (`shard.py` is what a shard does, `label_tasks.py` how it is orchestrated);
- `export/`: COCO JSON with overlays, and SA-1B shards for retraining;
- `ingest/`: SA-1B shards from a folder into object storage;
- `training/`: the trainer, its data stream, evaluation, and the retraining decision.

Shared: `resources.py` (per-process engine, stores and models), `model_loading.py` (which
weights a model name resolves to), `retry.py` (Prefect retry policy), `events.py` (Prefect
events of the closed loop).
"""
