"""Python environment of `bench/gpu_check.sh` where the project's .venv is absent.

The GPU machines have Python 3.12 with torch, CUDA and most scientific packages but no network
and not the project's service dependencies (prefect, SQLAlchemy, pydantic, boto3, ...). Two
commands:

    python bench/_gpu_env.py wheels DIR     (here, with PyPI) download the cp312 wheels of every
                                            pinned dependency of the installed `autolabel` that
                                            the GPU image lacks or holds in another version
    python bench/_gpu_env.py shim DIR       (there) make DIR/autolabel a namespace package whose
                                            subpackages link to this checkout's folders, as the
                                            editable install maps them (pyproject package-dir)
"""

import argparse
import importlib.metadata as md
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("models", "storage", "tasks", "flows")
#: On the GPU image and kept from it: large, compiled, or the CUDA stack itself (torch,
#: triton); the wheels and the checkout must travel in 64 MiB. Everything else in the closure
#: comes as a wheel at the version pinned here.
FROM_IMAGE = {
    "torch",
    "triton",
    "numpy",
    "scipy",
    "scikit-image",
    "imageio",
    "tifffile",
    "lazy-loader",
    "networkx",
    "pillow",
    "sympy",
    "mpmath",
    "onnx",
    "onnxruntime",
    "protobuf",
    "ml-dtypes",
    "setuptools",
    "hf-xet",
    "transformers",  # 13 MiB; with its hub, tokenizers and safetensors, the image's versions
    "tokenizers",
    "huggingface-hub",
    "safetensors",
    "regex",
    "pyyaml",
    "pygments",
}
#: botocore's AWS service models kept (the rest, ~15 MiB, is dropped: the check uses no AWS).
BOTOCORE_SERVICES = ("s3", "sts")
PLATFORMS: tuple[str, ...] = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
)
PLATFORMS += ("manylinux2014_x86_64", "manylinux1_x86_64", "manylinux_2_24_x86_64")
PLATFORMS += ("manylinux_2_34_x86_64", "manylinux_2_31_x86_64", "manylinux_2_5_x86_64")


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_closure(root: str = "autolabel") -> dict[str, str]:
    """{name: installed version} of `root` and everything it requires (no extras)."""
    from packaging.requirements import Requirement

    seen: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [(root, ())]
    while todo:
        name, extras = todo.pop()
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        if _key(name) in seen:
            continue
        seen[_key(name)] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            wanted = ("", *extras)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in wanted):
                todo.append((req.name, tuple(req.extras)))
    seen.pop(_key(root), None)
    return seen


def download_wheels(folder: Path) -> int:
    """pip-download cp312 manylinux wheels (or pure-Python ones) of the closure less FROM_IMAGE."""
    wanted = {k: v for k, v in pinned_closure().items() if k not in FROM_IMAGE}
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--python-version", "3.12", "--implementation", "cp", "-d", str(folder)]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    command += [f"{name}=={version}" for name, version in sorted(wanted.items())]
    done = subprocess.run(command, check=False)  # noqa: S603 - our own pip, fixed arguments
    for wheel in folder.glob("botocore-*.whl"):
        slim_botocore(wheel)
    size = sum(p.stat().st_size for p in folder.glob("*.whl")) / 2**20
    print(
        f"{len(wanted)} packages wanted, {len(list(folder.glob('*.whl')))} wheels, {size:.1f} MiB"
    )
    return done.returncode


def slim_botocore(wheel: Path) -> None:
    """Rewrite the botocore wheel without the service models outside BOTOCORE_SERVICES."""
    slim = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as out:
        for item in source.infolist():
            parts = item.filename.split("/")
            is_model = len(parts) > 3 and parts[:2] == ["botocore", "data"]
            if not is_model or parts[2] in BOTOCORE_SERVICES:
                out.writestr(item, source.read(item))
    slim.replace(wheel)


def make_shim(folder: Path) -> None:
    """folder/autolabel/<sub> -> ROOT/<sub> for every subpackage (a namespace package)."""
    package = folder / "autolabel"
    package.mkdir(parents=True, exist_ok=True)
    for sub in SUBPACKAGES:
        link = package / sub
        if not link.exists():
            link.symlink_to(ROOT / sub, target_is_directory=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["wheels", "shim"])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    if args.command == "wheels":
        return download_wheels(args.folder)
    make_shim(args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
