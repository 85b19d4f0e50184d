"""The quality report core on a small reviewed dataset in SQLite: counts, histograms, agreement,
samples, the page, its Markdown summary and the Prefect task wrappers (with fakes)."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from autolabel.storage.errors import StorageConfigError
from autolabel.tasks.quality import quality_tasks
from autolabel.tasks.quality.quality_report import compute_quality_report, write_quality_report
from autolabel.tasks.quality.report_data import CategoryRow, QualityRequest
from autolabel.tasks.quality.report_html import render_report_html
from autolabel.tasks.quality.report_summary import artifact_key, summary_markdown, summary_table
from autolabel.tasks.resources import Resources, bound
from tests.unit.tasks.quality.quality_data import FISH, QualityData, make_quality_data


@pytest.fixture
def data(tmp_path: Path) -> QualityData:
    return make_quality_data(tmp_path)


@pytest.fixture
def resources(data: QualityData, tmp_path: Path) -> Iterator[Resources]:
    res = data.resources(tmp_path)
    yield res
    res.close()


def _request(data: QualityData, tmp_path: Path, **extra: object) -> QualityRequest:
    return QualityRequest(dataset=data.dataset, output=str(tmp_path / "q.html"), **extra)


def test_counts_histograms_agreement_and_samples_of_the_dataset(
    data: QualityData, resources: Resources, tmp_path: Path
) -> None:
    report = compute_quality_report(_request(data, tmp_path, samples=4, bins=20), resources)
    result = report.result
    fields = ("predictions", "unreviewed", "accepted", "rejected", "superseded", "review_labels")
    assert result.categories == [
        CategoryRow(category=name, **dict(zip(fields, counts, strict=True)))
        for name, counts in (
            ("cat", (5, 2, 2, 1, 0, 1)),
            ("dog", (3, 1, 0, 0, 2, 2)),
            (FISH, (1, 1, 0, 0, 0, 0)),
        )
    ]
    assert (result.predictions, result.reviewed_images) == (9, 2)
    # cat scores 0.9, 0.8, 0.95, 0.5, 0.55 -> bins 18, 16, 19, 10, 11 of 20
    cat = report.histograms["score"]["cat"]
    assert [i for i, n in enumerate(cat) for _ in range(n)] == [10, 11, 16, 18, 19]
    assert report.histograms["stability_score"]["dog"][19] == 3
    rows = {r.category: r for r in result.agreement or []}
    assert set(rows) == {"cat", "dog"}
    assert (rows["cat"].tp, rows["cat"].fp, rows["cat"].fn) == (2, 1, 1)
    assert (rows["dog"].tp, rows["dog"].fp, rows["dog"].fn, rows["dog"].mean_iou) == (1, 1, 1, 0.75)
    total = result.agreement_total
    assert total is not None
    assert (total.precision, total.recall, total.mean_iou) == (0.6, 0.6, round(2.75 / 3, 4))
    assert [o.storage_key for o in report.overlays] == [
        data.image_urls[n] for n in ("r1.png", "r2.png", "u1.png")
    ]
    assert "5 masks" in report.overlays[0].caption  # 3 predictions and 2 reviewer labels
    assert [u.storage_key for u in result.unreadable] == [data.image_urls["missing.png"]]
    assert "missing.png" in result.unreadable[0].reason


def test_a_run_counts_only_its_own_predictions(
    data: QualityData, resources: Resources, tmp_path: Path
) -> None:
    first = compute_quality_report(_request(data, tmp_path, run_id=data.run1), resources).result
    assert first.predictions == 8
    assert first.agreement_total is not None
    assert first.agreement_total.tp == 3
    second = compute_quality_report(_request(data, tmp_path, run_id=data.run2), resources)
    assert second.result.predictions == 1
    assert second.result.agreement is None
    page = render_report_html(second)
    assert "No reviewed images in this report" in page
    assert 'data-figures="2"' in page  # counts and scores; no agreement chart


def test_the_page_is_self_contained_and_escapes_data(
    data: QualityData, resources: Resources, tmp_path: Path
) -> None:
    result = write_quality_report(_request(data, tmp_path, samples=4), resources)
    page = Path(result.output).read_text(encoding="utf-8")
    assert result.output == str(tmp_path / "q.html")
    assert 'data-figures="3"' in page
    assert len(re.findall(r'class="plotly-graph-div"', page)) == 3
    assert page.count("data:image/jpeg;base64,") == 3
    assert re.search(r"<(script|link|img)[^>]* (src|href)=\"(?!data:)", page) is None
    assert FISH not in page
    assert "&lt;i&gt;fish&lt;/i&gt;" in page
    assert "missing.png" in page
    assert list(tmp_path.glob("*.tmp")) == []


def test_a_file_url_output_goes_through_the_object_store(
    data: QualityData, resources: Resources, tmp_path: Path
) -> None:
    url = (tmp_path / "reports").as_uri() + "/quality.html"
    (tmp_path / "reports").mkdir()
    result = write_quality_report(
        QualityRequest(dataset=data.dataset, output=url, samples=0), resources
    )
    assert result.output == url
    assert (tmp_path / "reports" / "quality.html").read_text().startswith("<!DOCTYPE html>")


def test_unknown_dataset_foreign_run_and_unwritable_output_are_one_line_errors(
    data: QualityData, resources: Resources, tmp_path: Path
) -> None:
    with pytest.raises(StorageConfigError, match="existing dataset"):
        compute_quality_report(QualityRequest(dataset="nope", output="x.html"), resources)
    with pytest.raises(StorageConfigError, match="label run of dataset"):
        compute_quality_report(_request(data, tmp_path, run_id=999), resources)
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StorageConfigError, match="cannot write"):
        write_quality_report(
            QualityRequest(dataset=data.dataset, output=str(tmp_path / "file" / "q.html")),
            resources,
        )


def test_summary_markdown_and_table(
    data: QualityData, resources: Resources, tmp_path: Path
) -> None:
    result = write_quality_report(_request(data, tmp_path, samples=4), resources)
    markdown = summary_markdown(result)
    assert f"]({(tmp_path / 'q.html').as_uri()})" in markdown
    assert "| cat | 2 | 1 | 1 | 0.667 | 0.667 | 0.667 | 1.000 |" in markdown
    assert "| all | 3 | 2 | 2 | 0.600 | 0.600 | 0.600 | 0.917 |" in markdown
    assert "&lt;i&gt;fish&lt;/i&gt;" in markdown
    assert FISH not in markdown
    assert "missing.png" in markdown
    table = summary_table(result)
    assert [row["category"] for row in table] == ["cat", "dog", FISH]
    assert table[0]["precision"] == 0.6667
    assert "precision" not in table[2]
    assert artifact_key(result) == f"quality-report-dataset-{result.dataset_id}"


def test_the_task_wrappers_write_the_page_and_publish_both_artifacts(
    data: QualityData,
    resources: Resources,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    published: list[tuple[str, str]] = []
    monkeypatch.setattr(
        quality_tasks,
        "create_markdown_artifact",
        lambda markdown, key, description: published.append((key, markdown)),
    )
    monkeypatch.setattr(
        quality_tasks,
        "create_table_artifact",
        lambda table, key, description: published.append((key, str(len(table)))),
    )
    with bound(resources):
        result = quality_tasks.write_quality_report.fn(
            _request(data, tmp_path, run_id=data.run1, samples=0)
        )
    quality_tasks.publish_quality_report.fn(result)
    key = f"quality-report-run-{data.run1}"
    assert [k for k, _ in published] == [key, f"{key}-table"]
    assert "Quality report: quality-ds, run" in published[0][1]
    assert published[1][1] == "3"
