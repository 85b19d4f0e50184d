"""`autolabel quality-report` on PostgreSQL, and its page in headless Chromium.

A small labeled and reviewed dataset (`tests/unit/tasks/quality/quality_data.py`) is stored in a
fresh database; the installed console script writes the report (through the `quality-report`
flow on its own temporary Prefect API); Debian's `chromium` then opens the page offline, takes a
screenshot and dumps the DOM: every figure must have been drawn by plotly.js (an
`svg.main-svg` inside each `div.plotly-graph-div`), and the console must stay silent. Without
`chromium` the browser test skips, unless AUTOLABEL_REQUIRE_REVIEW_TOOLS=1 (CI), where it fails.
"""

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image as PILImage

from tests.conftest import PostgresDatabases
from tests.integration.cli.conftest import autolabel, error_lines
from tests.unit.tasks.quality.quality_data import make_quality_data

pytestmark = pytest.mark.integration

WINDOW = (1400, 2400)


@dataclass(frozen=True)
class Written:
    """The command's environment and output, and the page it wrote."""

    env: dict[str, str]
    result: subprocess.CompletedProcess[str]
    page: Path
    missing_url: str


@pytest.fixture(scope="module")
def written(
    postgres_databases: PostgresDatabases,
    tmp_path_factory: pytest.TempPathFactory,
    cli_prefect_home: Path,
    runtime_cache_dir: Path,
) -> Written:
    """The report of the dataset, written once for this module's tests."""
    root = tmp_path_factory.mktemp("quality-cli")
    data = make_quality_data(root, database_url=postgres_databases.create())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOLABEL_", "PREFECT_API"))}
    env.update(
        AUTOLABEL_HOME=str(root / "home"),
        AUTOLABEL_DATABASE__URL=data.database_url.render_as_string(hide_password=False),
        AUTOLABEL_MODELS__RUNTIME_CACHE_DIR=str(runtime_cache_dir),
        PREFECT_HOME=str(cli_prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        COLUMNS="200",
    )
    page = root / "reports" / "quality.html"
    args = ["quality-report", "--dataset", data.dataset, "--output", str(page), "--samples", "4"]
    return Written(env, autolabel(args, env), page, data.image_urls["missing.png"])


def test_the_command_writes_the_report_and_prints_its_agreement(written: Written) -> None:
    result = written.result
    assert result.returncode == 0, result.stderr[-3000:]
    assert error_lines(result) == []
    assert f"of 9 predictions in 3 categories to {written.page}" in result.stdout
    assert (
        "2 reviewed images at mask IoU >= 0.5: precision 0.600, recall 0.600, "
        "mean mask IoU 0.917" in result.stdout
    )
    assert f"unreadable image: {written.missing_url}: " in result.stderr
    page = written.page.read_text(encoding="utf-8")
    assert 'data-figures="3"' in page
    assert page.count("data:image/jpeg;base64,") == 3
    assert "&lt;i&gt;fish&lt;/i&gt;" in page
    assert "<i>fish</i>" not in page


def test_bad_options_end_in_one_line(
    written: Written, cli_in_process: Callable[..., tuple[int, str, str]]
) -> None:
    database = written.env["AUTOLABEL_DATABASE__URL"]
    args = ["quality-report", "--dataset", "quality-ds", "--output", "x.html", "--iou", "2"]
    code, _, err = cli_in_process(args, AUTOLABEL_DATABASE__URL=database)
    assert code == 2
    assert err.splitlines() == [
        "autolabel: error: iou_threshold: Input should be less than or equal to 1"
    ]


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is not None:
        return path
    if os.environ.get("AUTOLABEL_REQUIRE_REVIEW_TOOLS") == "1":
        pytest.fail("chromium is not installed, and AUTOLABEL_REQUIRE_REVIEW_TOOLS=1 requires it")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def _browse(page: Path, tmp_path: Path, *action: str) -> subprocess.CompletedProcess[str]:
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        *action,
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], "the page logged to the JavaScript console"
    return result


def test_chromium_draws_every_figure_without_errors(written: Written, tmp_path: Path) -> None:
    assert written.result.returncode == 0, written.result.stderr[-3000:]
    dom = _browse(written.page, tmp_path, "--dump-dom").stdout
    expected = int(re.findall(r'data-figures="(\d+)"', dom)[0])
    figures = dom.split('class="plotly-graph-div')[1:]
    assert expected == 3
    assert len(figures) == expected
    # Each figure's markup up to the next figure: plotly.js put its svg there once it ran.
    drawn = [i for i, markup in enumerate(figures) if 'class="main-svg"' in markup]
    assert drawn == list(range(expected)), "a figure was left without plotly.js's svg"

    screenshot = tmp_path / "quality.png"
    _browse(written.page, tmp_path, f"--screenshot={screenshot}")
    with PILImage.open(screenshot) as image:
        assert image.size == WINDOW
        rgb = image.convert("RGB")
    colors = rgb.getcolors(maxcolors=1 << 20) or []
    assert len(colors) > 200, "the screenshot is nearly blank"
    white = sum(count for count, color in colors if color == (255, 255, 255))
    assert white < 0.9 * WINDOW[0] * WINDOW[1]
