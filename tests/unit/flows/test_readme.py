"""The README stays true: its configuration table is the one generated from `Settings`."""

import re
from pathlib import Path

from autolabel.flows.settings_table import settings_table_markdown

README = Path(__file__).resolve().parents[3] / "README.md"


def test_configuration_table_matches_settings() -> None:
    text = README.read_text()
    match = re.search(
        r"<!-- settings-table:start.*?-->\n(.*?)\n<!-- settings-table:end -->", text, re.S
    )
    assert match, "README.md lost its settings-table markers"
    assert match.group(1) == settings_table_markdown()


def test_ci_runs_the_readme_test_command() -> None:
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", text, re.S)
    test_command = next(b for b in blocks if b.endswith("pytest"))
    install, _, runner = test_command.rpartition(" && ")
    assert install in ci
    assert f"\n{runner}\n" in ci
