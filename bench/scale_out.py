"""One labeling job on 1, 2 and 4 process workers of one work pool: scaling and start-up.

A fresh Prefect server gets a work pool and the shard deployment of `_fixed_cost_shard.py` (the
production shard flow, models that sleep for the device time). Per worker count W, a dataset of
its own in one fresh autolabel database: W workers, then the real `autolabel label` against the
server, timed, and each shard run's seconds from `label_shards`. See bench/README.md.

    .venv/bin/python bench/scale_out.py --quick --json /tmp/scale_out.json
"""

import argparse
import contextlib
import io
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.corpus (the image generator)

from _fixed_cost_shard import DEPLOYMENT, DEVICE_MS_ENV, register_deployment  # noqa: E402

from autolabel.storage.db.engine import upgrade_to_head  # noqa: E402
from tests.corpus import photo_like  # noqa: E402

BIN = Path(sys.executable).parent
DEFAULT_IMAGES_PER_SHARD_RUN = 4096  # the setting's default (LabelingConfig.images_per_shard_run)
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
DISTINCT_IMAGES = 64  # generated once, then written again under new names
MAX_SHARD_SIZE = 10_000  # LabelJob.shard_size's bound: a shard run is one shard of the job


def scaling(walls: dict[int, float]) -> dict[int, dict[str, float]]:
    """Against the fewest workers b: speed-up T_b / T_W, efficiency b * T_b / (W * T_W)."""
    base = min(walls)
    return {
        w: {"speedup": walls[base] / t, "efficiency": base * walls[base] / (w * t)}
        for w, t in walls.items()
    }


def projected_startup_fraction(
    startup_s: float, device_s_per_image: float, images: int = DEFAULT_IMAGES_PER_SHARD_RUN
) -> float:
    """Start-up's share of a shard run of `images` images: startup / (startup + device time)."""
    return startup_s / (startup_s + images * device_s_per_image)


def peak_concurrency(intervals: Sequence[tuple[float, float]]) -> int:
    """Most (start, end) intervals open at once."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    peak = open_now = 0
    for _, step in events:
        open_now += step
        peak = max(peak, open_now)
    return peak


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid` -> its start time (so a reused pid is never killed), /proc."""
    stats: dict[int, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            stats[int(stat.parent.name)] = stat.read_text().rsplit(")", 1)[1].split()
    found: dict[int, str] = {}
    frontier = {pid}
    while frontier:
        frontier = {c for c, f in stats.items() if int(f[1]) in frontier and c not in found}
        found |= {c: stats[c][19] for c in frontier}
    return found


def stop(process: subprocess.Popen[bytes], sig: int, timeout: float = 60) -> None:
    """Send `sig` to the process's group, wait, then SIGKILL it and whatever it left behind."""
    below = descendants(process.pid)
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    for pid, started in below.items():
        with contextlib.suppress(OSError, IndexError):
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19] == started:
                os.kill(pid, signal.SIGKILL)


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A process of its own session (Ctrl-C reaches this script only, which stops it)."""
    with log.open("wb") as out:
        return subprocess.Popen(  # noqa: S603 - our own venv's commands
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


@contextlib.contextmanager
def database(admin_url: str, prefix: str, driver: str) -> Iterator[str]:
    """A new empty database on the admin URL's server (dropped at exit); yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        server = admin_url.rsplit("/", 1)[0].replace("postgresql://", f"postgresql+{driver}://")
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def own_and_children_cpu() -> float:
    """CPU seconds of this process and of its children that ended (and were waited for)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


@contextlib.contextmanager
def prefect_server(admin_url: str, tmp: Path, logs: Path) -> Iterator[str]:
    """`prefect server start` on a fresh PostgreSQL database; yields its API URL."""
    with database(admin_url, "scale_out_prefect", "asyncpg") as url, socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        sock.close()
        env = _clean_env() | {
            "PREFECT_HOME": str(tmp / "server-home"),
            "PREFECT_API_DATABASE_CONNECTION_URL": url,
            "PREFECT_UI_ENABLED": "false",
        }
        argv = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        process = start(argv, env, logs / "server.log")
        try:
            api = f"http://127.0.0.1:{port}/api"
            _wait_for(lambda: httpx.get(f"{api}/health").is_success, 180, "the server", process)
            yield api
        finally:
            stop(process, signal.SIGTERM)


def _wait_for(check: Any, seconds: float, what: str, process: subprocess.Popen[bytes]) -> None:
    """Until `check()` holds (an HTTP error counts as not yet), while `process` runs."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if check():
                return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} (keep the logs with --logs DIR)")
        time.sleep(0.5)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOLABEL_", "PREFECT_"))}
    return env | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "COLUMNS": "200"}


def online_workers(api: str, pool: str, names: set[str]) -> bool:
    response = httpx.post(f"{api}/work_pools/{pool}/workers/filter", json={}, timeout=5)
    response.raise_for_status()
    online = {w["name"] for w in response.json() if w.get("status") == "ONLINE"}
    return names <= online


def start_workers(
    stack: contextlib.ExitStack, n: int, pool: str, api: str, env: dict[str, str], logs: Path
) -> None:
    """`n` workers of `pool` (`--limit 1`), online on the server; `stack` stops them (SIGINT)."""
    names = {f"w{n}-{i}" for i in range(n)}
    for name in sorted(names):
        argv = [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process"]
        process = start([*argv, "--name", name, "--limit", "1"], env, logs / f"{name}.log")
        stack.callback(stop, process, signal.SIGINT)
    _wait_for(lambda: online_workers(api, pool, names), 180, "the workers", process)


def write_images(folder: Path, n: int, size: tuple[int, int]) -> None:
    """`n` JPEGs: DISTINCT_IMAGES different pictures, repeated under new names."""
    rng, pictures = np.random.default_rng(0), []
    for _ in range(min(n, DISTINCT_IMAGES)):
        buffer = io.BytesIO()
        photo_like(rng, *size).save(buffer, "JPEG", quality=90)
        pictures.append(buffer.getvalue())
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"img_{i:06d}.jpg").write_bytes(pictures[i % len(pictures)])


def label_argv(args: argparse.Namespace, source: str, dataset: str) -> list[str]:
    """The job: one shard per shard run, torch runtimes (no trials), the stand-ins' prompt."""
    models = ["--detector", "grounding-dino-test", "--segmenter", "efficientvit-sam-test"]
    backends = ["--segmenter-backend", "torch", "--detector-backend", "torch"]
    sizes = ["--shard-size", str(args.images_per_shard_run), "--batch-size", str(args.batch_size)]
    job = ["--source", source, "--dataset", dataset, "--prompts", "object", "--random-weights"]
    return [str(BIN / "autolabel"), "label", *job, *models, *backends, *sizes]


def job_env(args: argparse.Namespace, api: str, db_url: str, tmp: Path) -> dict[str, str]:
    """The environment of `prefect deploy`, the workers (so their shard runs) and the jobs."""
    return _clean_env() | {
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(tmp / "prefect-home"),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "AUTOLABEL_PREFECT_API": "server",
        "AUTOLABEL_HOME": str(tmp / "home"),
        "AUTOLABEL_DATABASE__URL": db_url,
        "AUTOLABEL_MODELS__DEVICE": "cpu",
        "AUTOLABEL_LABELING__SHARD_DEPLOYMENT": DEPLOYMENT,
        "AUTOLABEL_LABELING__IMAGES_PER_SHARD_RUN": str(args.images_per_shard_run),
        DEVICE_MS_ENV: str(args.device_ms),
    }


def measure(
    workers: int, args: argparse.Namespace, api: str, pool: str, source: str, env: dict[str, str]
) -> dict[str, Any]:
    """One job (dataset `scale-out-<workers>`) on `workers` workers: its row of the table."""
    device_s_per_run = args.images_per_shard_run * args.device_ms / 1000
    dataset, log = f"scale-out-{workers}", args.logs / f"job-{workers}.log"
    load_before, cpu_before = os.getloadavg(), own_and_children_cpu()
    with contextlib.ExitStack() as stack:
        start_workers(stack, workers, pool, api, env, args.logs)
        began = time.perf_counter()
        job = start(label_argv(args, source, dataset), env, log)
        stack.callback(stop, job, signal.SIGINT, 120)  # Ctrl-C: the job cancels its shard runs
        code = job.wait(timeout=600 + 3 * args.shard_runs * device_s_per_run)
        wall = time.perf_counter() - began
    cpu_s, load_after = own_and_children_cpu() - cpu_before, os.getloadavg()
    row = _read_back(env["AUTOLABEL_DATABASE__URL"], dataset, workers, args)
    if code != 0:
        print(f"autolabel label exited {code}:\n{log.read_text()[-3000:]}")
    return row | {
        "wall_s": round(wall, 2),
        "exit_code": code,
        "extra_s_per_shard_run": round(workers * wall / args.shard_runs - device_s_per_run, 2),
        "images_per_s": round(row["images"] / wall, 3),
        "cpu_s": round(cpu_s, 1),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
    }


def _read_back(db_url: str, dataset: str, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """The run's counts and each completed attempt's seconds, from the job's database."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            runs = "SELECT r.* FROM label_runs r JOIN datasets d ON d.id = r.dataset_id"
            run = conn.execute(text(f"{runs} WHERE d.name = :n"), {"n": dataset}).first()
            shards = conn.execute(
                text("SELECT * FROM label_shards WHERE run_id = :r ORDER BY id"),
                {"r": run.id if run else 0},
            ).all()
    finally:
        engine.dispose()
    done = [s for s in shards if s.status == "completed"]
    startup = [float(s.result["seconds"]["startup"]) for s in done]
    shard_wall = [float(s.result["seconds"]["shard_wall"]) for s in done]
    spans = [(s.started_at.timestamp(), s.finished_at.timestamp()) for s in done]
    return {
        "workers": workers,
        "images": args.shard_runs * args.images_per_shard_run,
        "run_status": str(run.status) if run else "none",
        "images_done": int(run.images_done) if run else 0,
        "images_failed": int(run.images_failed) if run else 0,
        "run_timings": run.timings if run else {},
        "attempts": len(shards),
        "attempt_numbers": [s.attempt for s in shards],
        "attempts_completed": len(done),
        "peak_concurrent_attempts": peak_concurrency(spans),
        "startup_s": [round(v, 2) for v in startup],
        "shard_wall_s": [round(v, 2) for v in shard_wall],
        "mean_startup_s": round(sum(startup) / max(len(startup), 1), 2),
        "startup_fraction": round(sum(startup) / max(sum(shard_wall), 1e-9), 4),
    }


def print_report(rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, float]:
    """The table and the projection line; returns the projection (by worker count)."""
    base, device_s = min(r["workers"] for r in rows), args.device_ms / 1000
    print(
        f"\n{args.shard_runs} shard runs x {args.images_per_shard_run} images, {args.device_ms:g} "
        f"ms device time per image ({args.images_per_shard_run * device_s:.0f} s per shard run)"
    )
    print(
        f"{'workers':>7} {'wall s':>7} {'img/s':>6} {'speed-up':>8} {'eff.':>6} "
        f"{'startup s':>9} {'startup %':>9} {'extra s/run':>11} {'peak':>4} {'CPU s':>6} "
        f"{'load 1m before/after':>20}"
    )
    for r in rows:
        print(
            f"{r['workers']:>7} {r['wall_s']:>7.1f} {r['images_per_s']:>6.2f} "
            f"{r['speedup']:>7.2f}x {100 * r['efficiency']:>5.1f}% {r['mean_startup_s']:>9.1f} "
            f"{100 * r['startup_fraction']:>8.1f}% {r['extra_s_per_shard_run']:>11.1f} "
            f"{r['peak_concurrent_attempts']:>4} {r['cpu_s']:>6.0f} "
            f"{r['load_average_before'][0]:>9.2f} / {r['load_average_after'][0]:<.2f}"
        )
        if r["images_done"] != r["images"] or r["exit_code"] or r["attempts"] > args.shard_runs:
            print(
                f"  ! run {r['run_status']}, {r['images_done']} of {r['images']} images done, "
                f"attempts {r['attempt_numbers']}"
            )
    projection = {
        str(r["workers"]): round(projected_startup_fraction(r["mean_startup_s"], device_s), 4)
        for r in rows
    }
    parts = [
        f"{r['mean_startup_s']:.1f} s ({r['workers']} w) -> {100 * share:.1f} %"
        for r, share in zip(rows, projection.values(), strict=True)
    ]
    print(
        f"Against {base} worker(s); efficiency = T{base}*{base}/(W*TW). Start-up share projected "
        f"at {DEFAULT_IMAGES_PER_SHARD_RUN} images per shard run and {args.device_ms:g} ms/image: "
        f"{'; '.join(parts)}"
    )
    return projection


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="Workers 1 4, shard runs of 200 images x 100 ms.")
    add("--json", type=Path, help="Write every number here.")
    add("--workers", type=int, nargs="+", default=[1, 2, 4], help="Worker counts to measure.")
    add("--shard-runs", type=int, default=4, help="Shard runs per job, all of the same size.")
    add("--images-per-shard-run", type=int, default=1000, help="At most 10000 (--shard-size).")
    add("--device-ms", type=float, default=120.0, help="Stand-in device time per image.")
    add("--batch-size", type=int, default=8)
    add("--image-size", type=int, nargs=2, default=[320, 240], metavar=("W", "H"))
    add("--pg-url", default=PG_ADMIN_URL, help="PostgreSQL admin URL (throwaway databases).")
    add("--logs", type=Path, help="Keep the server's, workers' and jobs' logs in this folder.")
    args = parser.parse_args(argv)
    if args.quick:
        args.workers, args.images_per_shard_run, args.device_ms = [1, 4], 200, 100.0
    counts = [*args.workers, args.shard_runs, args.images_per_shard_run]
    if min(counts) < 1 or args.images_per_shard_run > MAX_SHARD_SIZE:
        parser.error(f"expected counts >= 1 and --images-per-shard-run <= {MAX_SHARD_SIZE}")
    args.workers = sorted(set(args.workers))
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: `&` in a script ignores it
        signal.signal(sig, signal.default_int_handler)  # KeyboardInterrupt: the finally blocks
    load_start, rows = os.getloadavg(), []
    with tempfile.TemporaryDirectory(prefix="scale-out-") as name:
        tmp = Path(name)
        args.logs = args.logs or tmp / "logs"
        args.logs.mkdir(parents=True, exist_ok=True)
        write_images(tmp / "images", args.shard_runs * args.images_per_shard_run, args.image_size)
        source = (tmp / "images").resolve().as_uri()
        with (
            prefect_server(args.pg_url, tmp, args.logs) as api,
            database(args.pg_url, "scale_out_autolabel", "psycopg") as db_url,
        ):
            upgrade_to_head(db_url)
            pool, env = f"scale-out-{uuid.uuid4().hex[:6]}", job_env(args, api, db_url, tmp)
            register_deployment(env, pool, tmp / "deploy", prefect=BIN / "prefect")
            # One database for all: a fresh one per worker count would restart the run ids, and
            # the shard runs' idempotency keys (run, shard, attempt) would meet the earlier runs'.
            for workers in args.workers:
                print(f"{workers} worker(s) ...", flush=True)
                rows.append(measure(workers, args, api, pool, source, env))
    ratios = scaling({r["workers"]: r["wall_s"] for r in rows})
    for row in rows:
        row.update({k: round(v, 4) for k, v in ratios[row["workers"]].items()})
    projection = print_report(rows, args)
    if args.json:
        report = {
            "rows": rows,
            "projected_startup_fraction_at_4096": projection,
            "total_cpu_s": round(own_and_children_cpu(), 1),  # the server's too, once it ended
            "load_average": {"start": load_start, "end": os.getloadavg()},
            "cpus": os.cpu_count(),
            "args": vars(args) | {"json": str(args.json), "logs": str(args.logs)},
        }
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted: the processes it started are stopped, its databases dropped")
