"""Flow `tune-thresholds`: per-category detector thresholds chosen on a dataset's reviewed sample.

    resolve the sample (dataset, the job to re-run, reviewed images)
    -> score it (the job's detector at a low floor, masks by its segmenter)
    -> choose thresholds per category, store the changed ones (unless a dry run),
       publish the before/after table

Later label runs of the dataset use the stored thresholds by default (`autolabel.tasks.tuning.
job_defaults`); see docs/tuning.md.
"""

from prefect import flow

from autolabel.flows.resources import process_resources
from autolabel.flows.settings import get_settings
from autolabel.tasks.resources import bound
from autolabel.tasks.tuning.thresholds import TuneRequest, TuningReport
from autolabel.tasks.tuning.tuning_tasks import (
    choose_thresholds,
    resolve_sample,
    score_reviewed_sample,
)

__all__ = ["TuneRequest", "TuningReport", "tune_thresholds"]


@flow(name="tune-thresholds", validate_parameters=True)
def tune_thresholds(request: TuneRequest) -> TuningReport:
    """Tune `request.dataset`'s thresholds on its reviewed images; store them unless a dry run."""
    with bound(process_resources(get_settings(), use_device_limit=True)):
        source = resolve_sample(request)
        sample = score_reviewed_sample(source, request.match_by)
        report: TuningReport = choose_thresholds(request, source, sample)
    return report
