"""State-dict layout (the official one, in tests/fixtures/parity) and parameter counts."""

import json

import pytest

from autolabel.models.efficientvit_sam.specs import SEGMENTER_SPECS
from autolabel.models.registry import get_spec
from tests.unit.models.helpers import FIXTURES_DIR

#: keys_<v>.json, copied from shared/parity by tests/fixtures/parity/reduce.py.
PARITY_DIR = FIXTURES_DIR / "parity"
VARIANTS = ["l0", "l1", "l2", "xl0", "xl1"]
PAPER_PARAMS_M = {"l0": 34.8, "l1": 47.7, "l2": 61.3, "xl0": 117.0, "xl1": 203.3}


@pytest.mark.parametrize("variant", VARIANTS)
def test_state_dict_layout_equals_official(variant: str) -> None:
    expected = json.loads((PARITY_DIR / f"keys_{variant}.json").read_text())
    model = get_spec(f"efficientvit-sam-{variant}").build()
    got = [
        [name, list(t.shape), str(t.dtype).removeprefix("torch.")]
        for name, t in model.state_dict().items()
    ]
    assert got == expected
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(params_m, 1) == PAPER_PARAMS_M[variant]


def test_registry_lists_released_variants_with_weights() -> None:
    assert sorted(SEGMENTER_SPECS) == sorted(f"efficientvit-sam-{v}" for v in VARIANTS)
    for variant in VARIANTS:
        spec = SEGMENTER_SPECS[f"efficientvit-sam-{variant}"]
        assert spec.input_size == (512 if variant.startswith("l") else 1024)
        assert spec.params_millions == PAPER_PARAMS_M[variant]
        assert spec.weights.filename == f"efficientvit_sam_{variant}.pt"
        assert spec.weights.url == (
            "https://huggingface.co/mit-han-lab/efficientvit-sam/resolve/main/"
            f"efficientvit_sam_{variant}.pt"
        )
    assert SEGMENTER_SPECS["efficientvit-sam-l0"].weights.sha256 == (
        "c4f994b01a16d48bcf2fbbb089448cfbf58fae5811edfa8113c953b8b8cc64b8"
    )
