"""Tuned thresholds as the default of later label runs.

When a labeling job starts for a dataset with tuned thresholds (`autolabel tune-thresholds`),
each prompted category the job gives no threshold of its own gets the tuned box and text
thresholds (box and text separately: a job's own value always wins). The job the run records
(its parameters) and its work key then carry them, so images labeled at other thresholds are
labeled again. `LabelJob.tuned_thresholds=False` (`autolabel label --no-tuned-thresholds`) turns
it off; jobs that segment boxes from a COCO file run no detector and are left as they are.
"""

import dataclasses
from collections.abc import Mapping

from autolabel.storage.db import queries
from autolabel.storage.db.category_thresholds import TunedThreshold, load_category_thresholds
from autolabel.storage.db.engine import session_scope
from autolabel.tasks.labeling.job import LabelJob
from autolabel.tasks.resources import Resources
from autolabel.tasks.tuning.thresholds import Thresholds


def with_tuned_thresholds(
    job: LabelJob, tuned: Mapping[str, TunedThreshold]
) -> tuple[LabelJob, dict[str, Thresholds]]:
    """`job` with `tuned` (category name -> stored thresholds) filling the per-category
    thresholds it does not set itself.

    Returns:
        The job (the same object when nothing applies) and, per category that took a tuned
        value, the thresholds it now runs at.
    """
    if not job.tuned_thresholds or job.boxes_from is not None or not tuned:
        return job, {}
    config = job.thresholds
    box, text = dict(config.category_box_thresholds), dict(config.category_text_thresholds)
    used: dict[str, Thresholds] = {}
    for category in job.prompt_set().categories:
        stored = tuned.get(category)
        if stored is None or (category in box and category in text):
            continue
        box.setdefault(category, stored.box_threshold)
        text.setdefault(category, stored.text_threshold)
        used[category] = Thresholds(box=box[category], text=text[category])
    if not used:
        return job, {}
    filled = dataclasses.replace(config, category_box_thresholds=box, category_text_thresholds=text)
    return job.model_copy(update={"thresholds": filled}), used


def tuned_job(job: LabelJob, resources: Resources) -> tuple[LabelJob, dict[str, Thresholds]]:
    """`job` with its dataset's stored tuned thresholds (see `with_tuned_thresholds`); a
    dataset that does not exist yet has none."""
    if not job.tuned_thresholds or job.boxes_from is not None:
        return job, {}
    with session_scope(resources.engine) as session:
        dataset_id = queries.find_dataset(session, name=job.dataset)
        if dataset_id is None:
            return job, {}
        stored = load_category_thresholds(session, dataset_id=dataset_id)
    return with_tuned_thresholds(job, stored)
