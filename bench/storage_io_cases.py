"""Object-store listing and image decoding benchmark cases (rows for bench/storage_throughput.py).

Each function returns table rows `{"case": str, "value": float, "unit": str}`.

- `listing_cases(endpoint_url, quick)`: puts N small objects into a new bucket on an S3 endpoint
  (a moto server), then times full streaming listings through `S3Store.list` (keys/s), with a
  suffix filter and with a glob whose literal prefix narrows the request; also a local-folder
  listing of the same keys for comparison.
- `moto_listing_cases(quick)`: the same, on a moto server it starts and stops itself.
- `decode_cases(quick)`: `decode_image` rates per format on synthetic photo-like images
  (JPEG full size vs draft-reduced for 1024 and 512 px model inputs, PNG, 16-bit PNG, WebP),
  in images/s and megapixels/s of the original image.

Standalone: `python bench/storage_io_cases.py [--quick] [--json PATH]` (starts its own moto
server for the listing cases).
"""

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path
from typing import Any

import boto3
import numpy as np
from PIL import Image, ImageDraw, features

from autolabel.storage.config import S3Config
from autolabel.storage.images import decode_image
from autolabel.storage.local import LocalStore
from autolabel.storage.s3 import S3Store

Row = dict[str, Any]


def _row(case: str, value: float, unit: str) -> Row:
    return {"case": case, "value": round(value, 3), "unit": unit}


def _best_seconds(run: Callable[[], int], repeats: int) -> tuple[float, int]:
    """Fastest of `repeats` runs: (seconds, count returned by the run)."""
    best, count = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        count = run()
        best = min(best, time.perf_counter() - start)
    return best, count


def _bench_key(index: int) -> str:
    return f"shard-{index % 10:02d}/{index:07d}.{'jpg' if index % 2 == 0 else 'png'}"


def listing_cases(endpoint_url: str, quick: bool) -> list[Row]:
    """Listing rates on the S3 endpoint (and a local folder) for N small objects."""
    n_keys = 3_000 if quick else 20_000
    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto accepts any credentials
        region_name="us-east-1",
    )
    client = session.client("s3", endpoint_url=endpoint_url)
    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    keys = [_bench_key(i) for i in range(n_keys)]
    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=b"x"), keys))
    put_s = time.perf_counter() - start
    config = S3Config(endpoint_url=endpoint_url, region="us-east-1", path_style=True)
    store = S3Store(bucket, config=config, session=session)
    repeats = 2 if quick else 3
    rows = [_row(f"moto S3: PUT {n_keys} small objects (16 threads)", n_keys / put_s, "objects/s")]
    cases = {
        "full listing": lambda: sum(1 for _ in store.list()),
        "listing, suffix filter .jpg": lambda: sum(1 for _ in store.list(suffixes=[".jpg"])),
        "listing, glob shard-04/*.jpg": lambda: sum(
            1 for _ in store.list(pattern="shard-04/*.jpg")
        ),
    }
    for name, run in cases.items():
        seconds, count = _best_seconds(run, repeats)
        rows.append(
            _row(f"moto S3 {name} ({n_keys} keys, {count} matched)", n_keys / seconds, "keys/s")
        )
    with tempfile.TemporaryDirectory() as tmp:
        local = LocalStore(Path(tmp))
        for key in keys:
            (Path(tmp) / key).parent.mkdir(exist_ok=True)
            (Path(tmp) / key).write_bytes(b"x")
        seconds, count = _best_seconds(lambda: sum(1 for _ in local.list()), repeats)
        rows.append(_row(f"local folder full listing ({count} files)", count / seconds, "keys/s"))
    return rows


def _photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A gradient with random shapes and mild noise: compresses like a photograph."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = rng.uniform(0, 255, 3) + xs[..., None] * rng.uniform(-0.1, 0.1, 3) * 255 / width
    pixels += ys[..., None] * rng.uniform(-0.1, 0.1, 3) * 255 / height
    pixels += rng.normal(0, 5, size=pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(20, max(21, width // 4)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x0, y0, x0 + size, y0 + size // 2), fill=colour)
    return image


def _encoded_images(quick: bool) -> tuple[dict[str, bytes], float]:
    width, height = (2000, 1500) if quick else (4000, 3000)
    photo = _photo(np.random.default_rng(0), width, height)
    gray16 = (np.asarray(photo.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)

    def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
        out = BytesIO()
        image.save(out, fmt, **params)
        return out.getvalue()

    images = {
        "JPEG q90": encode(photo, "JPEG", quality=90),
        "PNG RGB": encode(photo, "PNG"),
        "PNG 16-bit gray": encode(Image.fromarray(gray16), "PNG"),
    }
    if features.check("webp"):
        images["WebP q90"] = encode(photo, "WEBP", quality=90)
    return images, width * height / 1e6


def _decode_rate(data: bytes, budget_s: float, **kwargs: Any) -> float:
    """Decodes per second over about `budget_s` seconds (at least 3 decodes)."""
    decode_image(data, **kwargs)  # warm-up
    count, start = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - start < budget_s:
        decode_image(data, **kwargs)
        count += 1
    return count / (time.perf_counter() - start)


def decode_cases(quick: bool) -> list[Row]:
    """decode_image rates per format; JPEG also with draft reduction for 1024/512 px inputs."""
    images, megapixels = _encoded_images(quick)
    budget = 1.5 if quick else 5.0
    rows: list[Row] = []
    label = f"{megapixels:.0f} MP"
    runs: list[tuple[str, bytes, dict[str, Any]]] = [
        (f"decode {name} {label}", data, {}) for name, data in images.items()
    ]
    jpeg = images["JPEG q90"]
    runs.insert(1, (f"decode JPEG q90 {label}, draft >=1024 px", jpeg, {"min_long_side": 1024}))
    runs.insert(2, (f"decode JPEG q90 {label}, draft >=512 px", jpeg, {"min_long_side": 512}))
    rates: dict[str, float] = {}
    for case, data, kwargs in runs:
        rate = rates[case] = _decode_rate(data, budget, **kwargs)
        rows.append(_row(case, rate, "images/s"))
        rows.append(_row(case, rate * megapixels, "MP/s (original)"))
    full = rates[runs[0][0]]
    for target, index in (("1024", 1), ("512", 2)):
        rows.append(
            _row(f"JPEG draft >={target} px speed-up vs full", rates[runs[index][0]] / full, "x")
        )
    return rows


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def moto_listing_cases(quick: bool) -> list[Row]:
    """`listing_cases` against a moto S3 server started for them on a free local port."""
    port = _free_port()
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        return listing_cases(f"http://127.0.0.1:{port}", quick)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    """Run the decode and listing cases and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a minute")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args()
    rows = decode_cases(args.quick) + moto_listing_cases(args.quick)
    for row in rows:
        print(f"{row['case']:<60}{row['value']:>14,.1f}  {row['unit']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
