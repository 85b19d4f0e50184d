"""The EfficientViT-SAM parity proof travels with the project.

The parity and layout tests once read ../shared/parity beside the checkout and skipped silently on
a fresh clone. They now read the reduced fixtures in tests/fixtures/parity; a test that still needs
shared/ goes through `require_shared`, which fails under CI instead of skipping.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.models.helpers import FIXTURES_DIR, REPO_ROOT, require_shared, shared_dir

#: Cheap L0 subset of the parity and layout tests, run in a copy of the checkout without shared/.
FRESH_CLONE_TESTS = [
    "tests/unit/models/test_efficientvit_sam_parity.py::test_input_tensor_is_bit_exact[l0]",
    "tests/unit/models/test_efficientvit_sam_parity.py::test_prompt_transforms_match[l0]",
    "tests/unit/models/test_efficientvit_sam_parity.py::test_predictor_matches_official[l0]",
    "tests/unit/models/test_efficientvit_sam_layout.py::test_state_dict_layout_equals_official[l0]",
]


def test_reduced_fixtures_are_in_the_repository() -> None:
    names = {path.name for path in (FIXTURES_DIR / "parity").iterdir()}
    for variant in ("l0", "l1", "l2", "xl0", "xl1"):
        assert {f"ref_{variant}.npz", f"keys_{variant}.json"} <= names
    assert {"image.npz", "fill.py", "reduce.py"} <= names


def test_shared_dir_honours_the_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOLABEL_SHARED_DIR", str(tmp_path))
    assert shared_dir() == tmp_path
    (tmp_path / "parity").mkdir()
    assert require_shared("parity") == tmp_path / "parity"
    monkeypatch.delenv("AUTOLABEL_SHARED_DIR")
    assert shared_dir() == REPO_ROOT.parent / "shared"


def test_missing_shared_skips_outside_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOLABEL_SHARED_DIR", str(tmp_path / "absent"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="absent"):
        require_shared("parity/ref_l0.npz")


@pytest.mark.parametrize("value", ["true", "1", "True"])
def test_missing_shared_fails_under_ci(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOLABEL_SHARED_DIR", str(tmp_path / "absent"))
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="under CI"):
        require_shared("parity/ref_l0.npz")


def test_parity_runs_on_a_fresh_clone_without_shared(tmp_path: Path) -> None:
    """Before the reduced fixtures, these skipped: the copy has no ../shared beside it."""
    clone = tmp_path / "clone"
    clone.mkdir()
    shutil.copy2(REPO_ROOT / "pyproject.toml", clone)
    shutil.copytree(
        REPO_ROOT / "tests", clone / "tests", ignore=shutil.ignore_patterns("__pycache__")
    )
    assert not (clone.parent / "shared").exists()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.pop("AUTOLABEL_SHARED_DIR", None)
    env["CI"] = "true"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-n",
            "0",
            "-p",
            "no:cacheprovider",
            *FRESH_CLONE_TESTS,
        ],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    summary = output.strip().splitlines()[-1]
    assert re.search(rf"\b{len(FRESH_CLONE_TESTS)} passed\b", summary), output
    assert "skipped" not in summary, output
