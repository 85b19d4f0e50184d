"""Loading the models a job names: official weights, registered versions, or random ones.

Random weights are drawn from a generator seeded with the model name (`seeded_random_weights`,
never the process-wide torch RNG), so every worker process builds the same model and a resumed
job labels its remaining images with the same (meaningless) weights: they exist for smoke runs
and tests, and their labels are marked with the version `<name>@random`.

Released weights are proven usable when a run resolves them (`resolve_segmenter`,
`detector_version`, before any work): a pinned sha256 must match, and a file without one must
load into its architecture (`autolabel.storage.weight_download.prove_weights`, cached per digest
in the weights ledger), so a bad file fails the run start with a one-line `CheckpointError`.
"""

import math
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import BertTokenizer, GroundingDinoForObjectDetection

from autolabel.models.detection import DetectionConfig
from autolabel.models.efficientvit_sam.optimize import prepare_for_inference
from autolabel.models.efficientvit_sam.sam import EfficientViTSam
from autolabel.models.errors import ChecksumMismatchError, UnknownModelError
from autolabel.models.grounding_dino.detector import GroundingDinoDetector, InferenceOptions
from autolabel.models.grounding_dino.runtime import ImageSideRunner
from autolabel.models.grounding_dino.text import load_tokenizer
from autolabel.models.registry import create_model, get_spec
from autolabel.models.runtime.backends import SegmenterBackend
from autolabel.models.runtime.choice import RuntimeRequest
from autolabel.models.weight_files import WeightFile, sha256_of
from autolabel.storage.artifact_cache import ArtifactCache
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.model_versions import get_model_version, get_production_model
from autolabel.storage.db.records import ModelVersionInfo
from autolabel.storage.weight_download import ensure_weights, prove_weights
from autolabel.tasks.resources import Resources
from autolabel.tasks.runtime_trials import PARITY_CAPTION, detector_trial, segmenter_trial
from autolabel.tasks.runtimes import RuntimeChoice, choose

RANDOM = "random"


@torch.no_grad()
def seeded_random_weights(model: nn.Module, name: str) -> None:
    """Refill `model`'s randomly initialised tensors with values that depend only on `name`,
    the tensor's name and its shape, drawn from generators of their own (never the process-wide
    torch RNG, which is neither seeded nor read here).

    Tensors the architecture initialises to a constant (norm weights, zero biases, BatchNorm
    statistics) keep it; a matrix or kernel gets uniform values in +-1/sqrt(fan_in) (PyTorch's
    default bound), any other floating tensor uniform values in +-0.1.
    """
    for key, tensor in model.state_dict(keep_vars=True).items():
        if not tensor.is_floating_point() or tensor.numel() < 2:
            continue
        flat = tensor.detach().flatten()
        if bool((flat == flat[0]).all()):
            continue
        generator = torch.Generator().manual_seed(zlib.crc32(f"{name}/{key}".encode()))
        values = torch.rand(tensor.shape, generator=generator, dtype=torch.float64) * 2 - 1
        bound = 1 / math.sqrt(tensor[0].numel()) if tensor.dim() >= 2 else 0.1
        tensor.data.copy_((values * bound).to(tensor.dtype))


PRODUCTION_SUFFIX = "@production"


@dataclass(frozen=True, slots=True)
class SegmenterWeights:
    """Which weights a segmenter name resolves to.

    Attributes:
        spec_name: Registry architecture, e.g. "efficientvit-sam-l0".
        path: Local weights file, or None for seeded random weights.
        sha256: Expected digest of `path` (None when the release has no pinned digest).
        version: Identity recorded on labels and in the work key: `<name>@<sha256 prefix>`.
        registered: The model version's name when it comes from the registry, else None.
    """

    spec_name: str
    path: Path | None
    sha256: str | None
    version: str
    registered: str | None = None


def resolve_segmenter(name: str, resources: Resources, *, random_weights: bool) -> SegmenterWeights:
    """Resolve `name`: a released model ("efficientvit-sam-l0"), a registered version name, or
    "<variant>@production" (the variant's production version).

    A released file is proven usable (`prove_weights`: its pinned sha256, or without one its
    layout, cached per digest in the weights ledger); a registered version's file is checked
    against the sha256 the registry recorded.

    Raises:
        UnknownModelError: an unknown name, or a test configuration without `random_weights`.
        WeightsUnavailableError, ChecksumMismatchError, CheckpointError: see `prove_weights`.
    """
    if random_weights:
        get_spec(name, family="segmenter")  # unknown names fail here, listing the known ones
        return SegmenterWeights(name, None, None, f"{name}@{RANDOM}")
    try:
        spec = get_spec(name, family="segmenter")
    except UnknownModelError:
        return _registered(name, resources)
    if spec.weights is None:
        raise UnknownModelError(
            f"expected a segmenter with released weights, got {name!r} (test configuration); "
            "use it with --random-weights"
        )
    config = resources.config
    proof = prove_weights(
        spec.weights, config.weights_dir, model_name=name, download=config.download_weights
    )
    version = f"{name}@{proof.sha256[:16]}"
    return SegmenterWeights(name, proof.path, spec.weights.sha256, version)


def _registered(name: str, resources: Resources) -> SegmenterWeights:
    with session_scope(resources.engine) as session:
        if name.endswith(PRODUCTION_SUFFIX):
            variant = name.removesuffix(PRODUCTION_SUFFIX)
            version = get_production_model(session, variant=variant)
            if version is None:
                raise UnknownModelError(f"expected a production version of {variant!r}, found none")
        else:
            version = get_model_version(session, name=name)
    path = fetch_version_weights(version, resources)
    label = f"{version.name}@{version.sha256[:16]}"
    return SegmenterWeights(version.variant, path, version.sha256, label, version.name)


def fetch_version_weights(version: ModelVersionInfo, resources: Resources) -> Path:
    """A registered version's weights in `<weights>/versions/`, downloaded once, sha256-checked."""
    path = resources.config.weights_dir / "versions" / f"{version.name}.pt"
    if not (path.is_file() and sha256_of(path) == version.sha256):
        store, key = resources.open_object(version.storage_uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        with store.open(key) as source, partial.open("wb") as target:
            shutil.copyfileobj(source, target, length=1 << 20)
        partial.replace(path)
    digest = sha256_of(path)
    if digest != version.sha256:
        raise ChecksumMismatchError(
            f"expected sha256 {version.sha256} for {version.storage_uri}, got {digest}"
        )
    return path


def load_segmenter(name: str, resources: Resources, *, random_weights: bool) -> EfficientViTSam:
    """Build the segmenter `name` resolves to, with its weights (or seeded random ones),
    prepared for inference in torch on the resources' device."""
    weights = resolve_segmenter(name, resources, random_weights=random_weights)
    model = segmenter_from(weights, name)
    device = resources.device
    return prepare_for_inference(model, device=device, dtype="auto")


def segmenter_from(weights: SegmenterWeights, name: str) -> EfficientViTSam:
    """The float32 CPU segmenter of resolved `weights` (seeded random ones by `name` when the
    weights have no file)."""
    if weights.path is None:
        model = create_model(weights.spec_name, family="segmenter")
        seeded_random_weights(model, name)
    else:
        model = create_model(
            weights.spec_name,
            family="segmenter",
            checkpoint_path=weights.path,
            expected_sha256=weights.sha256,
        )
    return model


def runtime_cache(resources: Resources) -> ArtifactCache:
    """Exported graphs, engines and runtime choices of this worker (by default
    `<weights>/runtime-cache`)."""
    config = resources.config
    return ArtifactCache(config.runtime_cache_dir or config.weights_dir / "runtime-cache")


def load_segmenter_runtime(
    name: str, resources: Resources, *, random_weights: bool, request: RuntimeRequest
) -> tuple[SegmenterBackend, RuntimeChoice]:
    """The segmenter `name` in the runtime `request` resolves to on this worker (see
    `autolabel.tasks.runtimes`), and that choice."""
    weights = resolve_segmenter(name, resources, random_weights=random_weights)
    cache = runtime_cache(resources)
    trial = segmenter_trial(
        segmenter_from(weights, name),
        weights.version,
        device=resources.device,
        cache=cache,
        threads=torch.get_num_threads(),
    )
    backend: SegmenterBackend
    backend, choice = choose(trial, request, device=resources.device, cache=cache)
    return backend, choice


def load_detector_runtime(
    name: str, resources: Resources, *, random_weights: bool, request: RuntimeRequest
) -> tuple["DetectorParts", RuntimeChoice]:
    """The detector `name` with its image side in the runtime `request` resolves to on this
    worker (see `autolabel.tasks.runtimes`), and that choice."""
    parts = resources.cached(
        ("detector-network", name, str(random_weights)),
        lambda: load_detector_parts(name, resources, random_weights=random_weights),
    )
    identity = detector_version(name, resources, random_weights=random_weights)
    caption_ids = list(parts.tokenizer(PARITY_CAPTION)["input_ids"])
    cache = runtime_cache(resources)
    trial = detector_trial(
        parts.model,
        caption_ids,
        identity,
        device=resources.device,
        cache=cache,
        threads=torch.get_num_threads(),
    )
    unsupported = {"tensorrt"} | ({"onnxruntime"} if resources.device.startswith("cuda") else set())
    image_side, choice = choose(
        trial,
        request,
        device=resources.device,
        cache=cache,
        unsupported=frozenset(unsupported),
    )
    return DetectorParts(parts.model, parts.tokenizer, parts.options, image_side), choice


def packaged_tokenizer_dir() -> Path:
    """bert-base-uncased's vocab.txt (sha256 07eced37...), shipped inside the package."""
    import autolabel.models.grounding_dino as package

    return Path(package.__file__).parent / "bert-base-uncased"


def tokenizer_dir(weights_dir: Path) -> Path:
    """Folder of the BERT tokenizer files: `<weights>/bert-base-uncased` when the operator put
    them there, else the bert-base-uncased vocabulary shipped with autolabel."""
    configured = weights_dir / "bert-base-uncased"
    return configured if configured.is_dir() else packaged_tokenizer_dir()


def detector_version(name: str, resources: Resources, *, random_weights: bool) -> str:
    """`<name>@<sha256 prefix>` of the detector weights, or `<name>@random`.

    Called when a run starts: the weights file is proven usable first (`prove_weights`: its
    pinned sha256, or without one its layout, cached per digest in the weights ledger).

    Raises:
        UnknownModelError: an unknown name, or a test configuration without `random_weights`.
        WeightsUnavailableError, ChecksumMismatchError, CheckpointError: see `prove_weights`.
    """
    if random_weights:
        return f"{name}@{RANDOM}"
    weights = _detector_weights(name)
    config = resources.config
    proof = prove_weights(
        weights, config.weights_dir, model_name=name, download=config.download_weights
    )
    return f"{name}@{proof.sha256[:16]}"


def _detector_weights(name: str) -> WeightFile:
    spec = get_spec(name, family="detector")
    if spec.weights is None:
        raise UnknownModelError(
            f"expected a detector with released weights, got {name!r} (test configuration); "
            "use it with --random-weights"
        )
    return spec.weights


@dataclass(frozen=True, slots=True)
class DetectorParts:
    """A loaded detector network, its tokenizer and how to run it (shared across configs)."""

    model: GroundingDinoForObjectDetection
    tokenizer: BertTokenizer
    options: InferenceOptions
    image_side: ImageSideRunner | None = None

    def with_config(self, config: DetectionConfig) -> GroundingDinoDetector:
        return GroundingDinoDetector(
            self.model, self.tokenizer, config, self.options, self.image_side
        )


def load_detector_parts(name: str, resources: Resources, *, random_weights: bool) -> DetectorParts:
    """The detector `name` with its weights (or seeded random ones) and the tokenizer files."""
    spec = get_spec(name, family="detector")
    config = resources.config
    options = InferenceOptions(
        device=resources.device, min_size=spec.min_size, max_size=spec.max_size
    )
    tokenizer = load_tokenizer(tokenizer_dir(config.weights_dir))
    if random_weights:
        model = create_model(name, family="detector")
        seeded_random_weights(model, name)
    else:
        weights = _detector_weights(name)
        path = ensure_weights(weights, config.weights_dir, download=config.download_weights)
        model = create_model(
            name, family="detector", checkpoint_path=path, expected_sha256=weights.sha256
        )
    return DetectorParts(model, tokenizer, options)
