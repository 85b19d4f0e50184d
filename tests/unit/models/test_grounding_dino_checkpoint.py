"""Strict loading, saving, conversion rules, tokenizer files and the optional original backend."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertTokenizer

from autolabel.models.errors import (
    CheckpointError,
    CheckpointMismatchError,
    ChecksumMismatchError,
    WeightsUnavailableError,
)
from autolabel.models.grounding_dino import (
    build_detector,
    convert_original_state_dict,
    load_detector_weights,
    load_tokenizer,
    save_state_dict,
    tiny_test_config,
)
from autolabel.models.grounding_dino.checkpoint import use_tokenizer_specials
from autolabel.models.grounding_dino.original_backend import (
    OriginalBackendUnavailableError,
    import_original,
)
from autolabel.models.weight_files import sha256_of
from tests.unit.models.helpers import VOCAB_DIR


def test_save_and_reload_is_strict_and_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_detector(tiny_test_config())
    path = tmp_path / "tiny.safetensors"
    save_state_dict(model, path)
    loaded = load_detector_weights(tiny_test_config(), path, sha256=sha256_of(path))
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0)


def test_checksum_mismatch_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "tiny.safetensors"
    save_state_dict(build_detector(tiny_test_config()), path)
    with pytest.raises(ChecksumMismatchError, match="expected sha256 0000"):
        load_detector_weights(tiny_test_config(), path, sha256="0" * 64)


def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path: Path) -> None:
    state = {k: v.clone() for k, v in build_detector(tiny_test_config()).state_dict().items()}
    del state["model.level_embed"]
    state["model.extra.weight"] = torch.zeros(2)
    state["model.enc_output.bias"] = torch.zeros(3)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointMismatchError) as info:
        load_detector_weights(tiny_test_config(), path)
    message = str(info.value)
    assert "1 missing keys: ['model.level_embed']" in message
    assert "1 unexpected keys: ['model.extra.weight']" in message
    assert "model.enc_output.bias: expected (32,), got (3,)" in message


def test_unused_swin_layernorm_may_be_absent(tmp_path: Path) -> None:
    state = dict(build_detector(tiny_test_config()).state_dict())
    state = {k: v.clone() for k, v in state.items() if ".swin.layernorm." not in k}
    path = tmp_path / "converted.safetensors"
    save_file(state, str(path))
    load_detector_weights(tiny_test_config(), path)


def test_missing_checkpoint_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match=r"docs/detection\.md"):
        load_detector_weights(tiny_test_config(), tmp_path / "groundingdino_swint_ogc.pth")


def test_original_pth_with_module_prefix_is_converted_on_load(tmp_path: Path) -> None:
    with pytest.raises(
        CheckpointError, match=r"original GroundingDINO layout, got 'mystery\.weight'"
    ):
        convert_original_state_dict({"module.mystery.weight": torch.zeros(1)})
    path = tmp_path / "bad.pth"
    torch.save({"model": {"module.mystery.weight": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="mystery"):
        load_detector_weights(tiny_test_config(), path)


def test_fused_projections_split_in_query_key_value_order() -> None:
    fused = torch.arange(12.0).reshape(6, 2)
    out = convert_original_state_dict(
        {
            "module.transformer.decoder.layers.0.self_attn.in_proj_weight": fused,
            "backbone.0.layers.1.blocks.0.attn.qkv.bias": torch.arange(6.0),
            "backbone.0.layers.1.blocks.0.attn.relative_position_index": torch.zeros(4),
            "bert.pooler.dense.weight": torch.zeros(1),
            "backbone.0.norm1.weight": torch.ones(1),
            "transformer.encoder.fusion_layers.0.attn.values_l_proj.bias": torch.ones(1),
        }
    )
    prefix = "model.decoder.layers.0.self_attn."
    torch.testing.assert_close(out[prefix + "query.weight"], fused[:2])
    torch.testing.assert_close(out[prefix + "key.weight"], fused[2:4])
    torch.testing.assert_close(out[prefix + "value.weight"], fused[4:])
    swin = "model.backbone.conv_encoder.model.swin.encoder.layers.1.blocks.0.attention."
    torch.testing.assert_close(out[swin + "v_proj.bias"], torch.tensor([4.0, 5.0]))
    assert "model.backbone.conv_encoder.model.hidden_states_norms.stage2.weight" in out
    assert "model.encoder.layers.0.fusion_layer.attn.values_text_proj.bias" in out
    assert not any("relative_position_index" in k or "pooler" in k for k in out)


def test_tokenizer_from_vocab_or_tokenizer_json(tmp_path: Path) -> None:
    from_vocab = load_tokenizer(VOCAB_DIR)
    from_vocab.save_pretrained(tmp_path)
    from_json = load_tokenizer(tmp_path)
    caption = "a forklift . person ."
    assert from_json(caption)["input_ids"] == from_vocab(caption)["input_ids"]
    assert from_vocab(caption)["input_ids"] == [101, 1037, 9292, 18412, 1012, 2711, 1012, 102]


def test_missing_tokenizer_files_are_an_offline_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match=r"vocab\.txt"):
        load_tokenizer(tmp_path)


def test_model_uses_the_tokenizer_delimiter_ids() -> None:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?", "cat"]
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)})
    model = build_detector(tiny_test_config())
    assert model.model.special_tokens.tolist() == [101, 102, 1012, 1029]
    use_tokenizer_specials(model, tokenizer)
    assert model.model.special_tokens.tolist() == [2, 3, 5, 6]


def test_original_backend_explains_the_environment_it_needs() -> None:
    with pytest.raises(OriginalBackendUnavailableError, match=r"torchvision==0\.29\.1"):
        import_original()


def test_transformers_directory_loads_strictly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_detector(tiny_test_config())
    model.save_pretrained(tmp_path)
    loaded = load_detector_weights(tiny_test_config(), tmp_path)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0)
    state = load_file(str(tmp_path / "model.safetensors"))
    del state["model.level_embed"]
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointMismatchError, match=r"model\.level_embed"):
        load_detector_weights(tiny_test_config(), tmp_path)
