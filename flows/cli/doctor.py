"""`autolabel doctor`: check that this machine and configuration can run labeling jobs.

Each check reports `ok`, `warn` (works, but something is worth knowing) or `fail` (a required
piece is missing or broken). The command exits 1 when any check fails.

Each known weights file present is hashed and its digest recorded in the weights ledger
(`<weights_dir>/weights-ledger.json`, `autolabel.storage.weight_ledger`). A pinned digest must
match; a file without one must load into its architecture (keys and shapes, proven once per
digest); a digest that differs from the ledger's previous record is reported.
"""

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import typer
from rich.console import Console
from rich.table import Table

from autolabel.flows.errors import FlowError
from autolabel.flows.settings import Settings, load_settings
from autolabel.models.errors import ModelError
from autolabel.models.weight_files import WeightFile
from autolabel.storage.errors import StorageError
from autolabel.storage.weight_download import WeightProof, prove_weights
from autolabel.storage.weight_ledger import LedgerEntry, WeightLedger

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's report."""

    name: str
    status: Status
    detail: str


def check_torch(settings: Settings) -> Check:
    import torch

    cuda = torch.cuda.is_available()
    gpus = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    detail = f"torch {torch.__version__}; CUDA {'available: ' + gpus if cuda else 'not available'}"
    wants_cuda = settings.models.device.startswith("cuda")
    if wants_cuda and not cuda:
        return Check(
            "torch",
            "fail",
            f"{detail}; AUTOLABEL_MODELS__DEVICE={settings.models.device} needs CUDA",
        )
    return Check("torch", "ok", f"{detail}; device {settings.models.device}")


def check_database(settings: Settings) -> Check:
    from autolabel.flows.resources import database_url
    from autolabel.storage.db.engine import make_engine, schema_status

    url = database_url(settings)
    engine = make_engine(url)
    try:
        current, head = schema_status(engine)
    finally:
        engine.dispose()
    where = url.render_as_string(hide_password=True)
    if current == head:
        return Check("database", "ok", f"{where}; schema at {head}")
    state = "empty" if current is None else f"at {current}"
    return Check(
        "database", "warn", f"{where}; schema {state}, head is {head}: run `autolabel db upgrade`"
    )


def check_storage(settings: Settings) -> Check:
    from autolabel.flows.resources import open_configured_store

    store = open_configured_store(settings)
    store.check()
    return Check("storage", "ok", store.url)


def check_weights(settings: Settings) -> Iterator[Check]:
    from autolabel.flows.resources import known_weight_files

    folder = settings.resolved_weights_dir
    for model_name, weights in known_weight_files():
        yield check_weight_file(model_name, weights, folder)


def check_weight_file(model_name: str, weights: WeightFile, folder: Path) -> Check:
    """The doctor's line for one weights file of `model_name` in `folder`.

    `warn` when absent. Otherwise the file is hashed and recorded in the ledger
    (`prove_weights`): `fail` when its pinned sha256 differs or, without one, when it does not
    load into the architecture (one-line reason); `warn` when it is fine but its digest differs
    from the ledger's record ("changed since <first seen>: sha256 X, was Y"); else `ok`.
    """
    path = folder / weights.filename
    name = f"weights {model_name}"
    if not path.is_file():
        return Check(name, "warn", f"absent: place {weights.filename} in {folder} ({weights.url})")
    ledger = WeightLedger(folder)
    before = ledger.entries().get(weights.filename)
    try:
        proof = prove_weights(
            weights, folder, model_name=model_name, download=False, progress=False
        )
    except (ModelError, OSError) as exc:  # OSError: the file cannot be read
        change = _change_note(before, ledger.entries().get(weights.filename))
        reason = " ".join(str(exc).split())
        return Check(name, "fail", f"{change}; {reason}" if change else reason)
    change = _change_note(before, ledger.entries().get(weights.filename))
    detail = f"{path}: {_proof_note(proof)}"
    return Check(name, "warn", f"{detail}; {change}") if change else Check(name, "ok", detail)


def _proof_note(proof: WeightProof) -> str:
    if proof.tensors is None:
        return f"sha256 verified ({proof.sha256[:16]})"
    cached = ", proven earlier for this sha256" if proof.layout_cached else ""
    return f"layout verified ({proof.tensors} tensors{cached}), sha256 {proof.sha256[:16]}"


def _change_note(before: LedgerEntry | None, after: LedgerEntry | None) -> str:
    """The note "changed since <first seen>: sha256 X, was Y" when the ledger's digest for the
    file differs from the one it had before this check, else an empty string."""
    if before is None or after is None or before.sha256 == after.sha256:
        return ""
    return f"changed since {before.first_seen}: sha256 {after.sha256}, was {before.sha256}"


def check_prefect(settings: Settings) -> Check:
    api_url = os.environ.get("PREFECT_API_URL")
    telemetry = os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED", "").lower()
    note = "" if telemetry == "false" else "; set PREFECT_SERVER_ANALYTICS_ENABLED=false"
    if settings.prefect_api == "ephemeral" and not api_url:
        return Check("prefect", "ok", f"ephemeral API (local, started per run){note}")
    if not api_url:
        return Check("prefect", "fail", "AUTOLABEL_PREFECT_API=server but PREFECT_API_URL is unset")
    import httpx

    try:
        response = httpx.get(f"{api_url.rstrip('/')}/health", timeout=5.0)
    except httpx.HTTPError as exc:
        return Check("prefect", "fail", f"{api_url} unreachable: {type(exc).__name__}")
    if response.status_code != 200:
        return Check("prefect", "fail", f"{api_url}/health answered {response.status_code}")
    return Check("prefect", "ok", f"server {api_url}{note}")


def _guarded(name: str, check: Callable[[Settings], Check], settings: Settings) -> Check:
    """Run one check; an expected error becomes a `fail` line with its one-line message."""
    try:
        return check(settings)
    except (FlowError, ModelError, StorageError) as exc:
        return Check(name, "fail", str(exc))


def run_checks(settings: Settings) -> list[Check]:
    """All checks, in report order."""
    checks = [
        _guarded("torch", check_torch, settings),
        _guarded("database", check_database, settings),
        _guarded("storage", check_storage, settings),
    ]
    checks.extend(check_weights(settings))
    checks.append(_guarded("prefect", check_prefect, settings))
    return checks


_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check torch/CUDA, database, storage, model weights and the Prefect API."""
    checks = run_checks(load_settings())
    if as_json:
        typer.echo(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        table = Table(title="autolabel doctor")
        for column in ("check", "status", "detail"):
            table.add_column(column, overflow="fold")
        for c in checks:
            table.add_row(c.name, f"[{_STYLE[c.status]}]{c.status}[/]", c.detail)
        Console(width=160).print(table)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(code=1)
