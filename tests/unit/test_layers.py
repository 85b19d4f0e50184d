"""The layer rules that import-linter cannot see by itself: every task module is either a
Prefect-free core (listed in the "task cores never import Prefect" contract) or a Prefect module
(`*_tasks.py`, `retry.py`, `events.py`); no layer holds two modules of the same name; files
stay under 400 lines without `# fmt: skip`."""

import ast
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PREFECT_MODULES = {"retry", "events"}
LAYERS = ("models", "storage", "tasks", "flows")
MAX_LINES = 400


def _contract(name: str) -> dict[str, object]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for contract in config["tool"]["importlinter"]["contracts"]:
        if contract["name"] == name:
            return dict(contract)
    raise AssertionError(f"expected an import-linter contract named {name!r}")


def _task_modules() -> dict[str, Path]:
    modules = {}
    for path in (ROOT / "tasks").rglob("*.py"):
        if path.name == "__init__.py":
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(("autolabel", *parts))] = path
    return modules


def _is_prefect_module(module: str) -> bool:
    name = module.rsplit(".", 1)[1]
    return name.endswith("_tasks") or name in PREFECT_MODULES


def _imports_prefect(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(
            a.name.split(".")[0] == "prefect" for a in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "prefect":
            return True
    return False


def test_every_task_core_is_in_the_no_prefect_contract() -> None:
    listed = set(_contract("task cores never import Prefect")["source_modules"])  # type: ignore[arg-type]
    cores = {m for m in _task_modules() if not _is_prefect_module(m)}
    assert cores - listed == set(), "add these cores to the contract in pyproject.toml"
    assert listed - cores == set(), "these contract entries name no core module"


def test_task_cores_do_not_import_prefect_even_lazily() -> None:
    offenders = [
        module
        for module, path in _task_modules().items()
        if not _is_prefect_module(module) and _imports_prefect(path)
    ]
    assert offenders == []


def test_each_capability_has_one_prefect_wrapper_module() -> None:
    for package in (p for p in (ROOT / "tasks").iterdir() if (p / "__init__.py").is_file()):
        wrappers = sorted(p.name for p in package.glob("*_tasks.py"))
        assert len(wrappers) == 1, f"tasks/{package.name}: expected one *_tasks.py, got {wrappers}"


def test_no_layer_holds_two_modules_of_the_same_name() -> None:
    for layer in LAYERS:
        names = Counter(
            p.stem
            for p in (ROOT / layer).rglob("*.py")
            if p.name != "__init__.py" and "versions" not in p.parts
        )
        assert [n for n, c in names.items() if c > 1] == [], layer


def test_files_stay_short_without_format_skips() -> None:
    long, skipped = [], []
    for layer in (*LAYERS, "bench"):
        for path in (ROOT / layer).rglob("*.py"):
            text = path.read_text()
            if text.count("\n") > MAX_LINES:
                long.append(str(path.relative_to(ROOT)))
            if "fmt: skip" in text:
                skipped.append(str(path.relative_to(ROOT)))
    assert long == []
    assert skipped == []
