"""BERT tokenizer from a local directory, and text features computed once per caption.

GroundingDINO's text side (BERT + projection) depends only on the caption, so its output is
computed once per prompt chunk and reused for every image batch (`TextFeatureCache`).
"""

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from transformers import BertTokenizer, GroundingDinoForObjectDetection
from transformers.models.grounding_dino.modeling_grounding_dino import (
    generate_masks_with_special_tokens_and_transfer_map,
)

from autolabel.models.errors import InvalidInputError, WeightsUnavailableError
from autolabel.models.prompts import TokenLayout

_SPECIAL = ("[CLS]", "[SEP]", ".", "?")


def load_tokenizer(directory: Path) -> BertTokenizer:
    """Load a BERT tokenizer from local files only (never from the hub).

    Args:
        directory: Holds `tokenizer.json` (+ `tokenizer_config.json`), or a bert `vocab.txt`.

    Raises:
        WeightsUnavailableError: Neither file is there.
    """
    if (directory / "tokenizer.json").is_file():
        loaded = BertTokenizer.from_pretrained(directory, local_files_only=True)
        return cast(BertTokenizer, loaded)
    vocab_file = directory / "vocab.txt"
    if not vocab_file.is_file():
        raise WeightsUnavailableError(
            f"expected tokenizer.json or vocab.txt of bert-base-uncased in {directory}, found "
            "neither; copy them there (see docs/detection.md, 'Offline weights')"
        )
    lines = vocab_file.read_text(encoding="utf-8").splitlines()
    return BertTokenizer(vocab={token: index for index, token in enumerate(lines)})


def token_layout(tokenizer: BertTokenizer, max_tokens: int) -> TokenLayout:
    """Special ids of `tokenizer` and the model's token limit."""
    cls_id, sep_id, dot_id, _ = special_token_ids(tokenizer)
    return TokenLayout(cls_id=cls_id, sep_id=sep_id, dot_id=dot_id, max_tokens=max_tokens)


def special_token_ids(tokenizer: BertTokenizer) -> tuple[int, int, int, int]:
    """Ids of "[CLS]", "[SEP]", "." and "?" (101, 102, 1012, 1029 in bert-base-uncased).

    Raises:
        InvalidInputError: The vocabulary lacks one of them.
    """
    ids = [tokenizer.convert_tokens_to_ids(token) for token in _SPECIAL]
    if tokenizer.unk_token_id in ids or not all(isinstance(i, int) for i in ids):
        raise InvalidInputError(f"expected a vocabulary with {list(_SPECIAL)}, got ids {ids}")
    cls_id, sep_id, dot_id, question_id = (int(cast(int, i)) for i in ids)
    return cls_id, sep_id, dot_id, question_id


def phrase_encoder(tokenizer: BertTokenizer) -> "PhraseEncoder":
    """Callable mapping one phrase to its word-piece ids, without special tokens."""
    return PhraseEncoder(tokenizer)


@dataclass(frozen=True, slots=True)
class PhraseEncoder:
    """Word-piece ids of one phrase (no "[CLS]"/"[SEP]")."""

    tokenizer: BertTokenizer

    def __call__(self, phrase: str) -> list[int]:
        return list(self.tokenizer(phrase, add_special_tokens=False)["input_ids"])


@dataclass(frozen=True, slots=True, kw_only=True)
class TextFeatures:
    """Text side of one caption, ready to be broadcast over an image batch.

    Attributes:
        input_ids: (1, T) int64 caption token ids, "[CLS] ... [SEP]".
        features: (1, T, d_model) float, projected BERT output.
        token_mask: (1, T) bool, True for real tokens (all True: captions are never padded).
        self_attention_mask: (1, T, T) bool, True where token i may attend to token j (within
            the same phrase, GroundingDINO's sub-sentence mask).
        position_ids: (1, T) int64, positions restarting after every ".".
    """

    input_ids: torch.Tensor
    features: torch.Tensor
    token_mask: torch.Tensor
    self_attention_mask: torch.Tensor
    position_ids: torch.Tensor


@torch.inference_mode()
def encode_text(model: GroundingDinoForObjectDetection, input_ids: torch.Tensor) -> TextFeatures:
    """Run BERT and the text projection on one tokenized caption.

    Args:
        model: The detector (its `model.special_tokens` buffer holds the delimiter ids).
        input_ids: (1, T) int64 token ids, T <= `model.config.max_text_len`.
    """
    limit = model.config.max_text_len
    if input_ids.ndim != 2 or input_ids.shape[0] != 1 or input_ids.shape[1] > limit:
        raise InvalidInputError(
            f"expected input_ids of shape (1, T<={limit}), got {tuple(input_ids.shape)}"
        )
    core = model.model
    device = core.text_projection.weight.device
    input_ids = input_ids.to(device)
    self_mask, position_ids = generate_masks_with_special_tokens_and_transfer_map(
        cast(torch.LongTensor, input_ids), cast(torch.LongTensor, core.special_tokens)
    )
    out = core.text_backbone(
        input_ids,
        self_mask[:, None, :, :],
        torch.zeros_like(input_ids),
        position_ids,
        return_dict=True,
    )
    return TextFeatures(
        input_ids=input_ids,
        features=core.text_projection(out.last_hidden_state),
        token_mask=torch.ones_like(input_ids, dtype=torch.bool),
        self_attention_mask=self_mask,
        position_ids=position_ids,
    )


class TextFeatureCache:
    """Least-recently-used cache of `TextFeatures`, keyed by the caption's token ids."""

    def __init__(self, model: GroundingDinoForObjectDetection, capacity: int = 64) -> None:
        self._model = model
        self._capacity = capacity
        self._entries: OrderedDict[tuple[int, ...], TextFeatures] = OrderedDict()
        self.misses = 0

    def get(self, input_ids: tuple[int, ...]) -> TextFeatures:
        """Features of the caption `input_ids`, computed on the first request only."""
        if input_ids in self._entries:
            self._entries.move_to_end(input_ids)
            return self._entries[input_ids]
        self.misses += 1
        features = encode_text(self._model, torch.tensor([input_ids], dtype=torch.long))
        self._entries[input_ids] = features
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
        return features
