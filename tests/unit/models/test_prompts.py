"""Prompt parsing, synonym mapping and caption chunking with the real bert-base-uncased vocab."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import BertTokenizer

from autolabel.models.errors import InvalidInputError
from autolabel.models.grounding_dino.text import load_tokenizer, phrase_encoder, token_layout
from autolabel.models.prompts import PromptSet, TokenLayout, chunk_prompt, normalize_phrase
from tests.unit.models.helpers import VOCAB_DIR


@pytest.fixture(scope="module")
def tokenizer() -> BertTokenizer:
    return load_tokenizer(VOCAB_DIR)


def test_normalize_lowercases_strips_and_drops_trailing_dots() -> None:
    assert normalize_phrase("  Remote   Control. ") == "remote control"
    assert normalize_phrase("Cat..") == "cat"


def test_from_categories_keeps_order_and_maps_each_phrase_to_itself() -> None:
    prompt = PromptSet.from_categories(["Person", "forklift", "person"])
    assert prompt.categories == ("person", "forklift")
    assert prompt.phrases == ("person", "forklift")
    assert prompt.phrase_category == (0, 1)


def test_synonyms_map_back_to_their_category() -> None:
    prompt = PromptSet.from_categories({"car": ["automobile", "Car"], "truck": ["lorry"]})
    assert prompt.categories == ("car", "truck")
    assert prompt.phrases == ("car", "automobile", "truck", "lorry")
    assert [prompt.category_of(i) for i in range(4)] == ["car", "car", "truck", "truck"]


def test_phrase_claimed_by_two_categories_is_an_error() -> None:
    with pytest.raises(InvalidInputError, match="'vehicle' for both 'car' and 'truck'"):
        PromptSet.from_categories({"car": ["vehicle"], "truck": ["vehicle"]})


def test_from_caption_splits_on_dots() -> None:
    prompt = PromptSet.from_caption("Person . forklift. pallet .")
    assert prompt.categories == ("person", "forklift", "pallet")


@pytest.mark.parametrize("caption", ["", "   ", ".", " . . ", "?!", "-- ."])
def test_empty_or_punctuation_only_caption_is_rejected(caption: str) -> None:
    with pytest.raises(InvalidInputError, match="at least one"):
        PromptSet.from_caption(caption)


@pytest.mark.parametrize("categories", [[], ["cat", "..."], ["  "]])
def test_empty_or_punctuation_only_category_is_rejected(categories: list[str]) -> None:
    with pytest.raises(InvalidInputError, match="at least one"):
        PromptSet.from_categories(categories)


def test_delimiters_inside_a_category_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match=r"without '\.'"):
        PromptSet.from_categories(["st. bernard"])
    with pytest.raises(InvalidInputError, match="without '\\?'"):
        PromptSet.from_categories(["what?"])


def test_a_plain_string_is_not_a_category_list() -> None:
    with pytest.raises(InvalidInputError, match="from_caption"):
        PromptSet.from_categories("cat . dog")


def test_single_chunk_matches_the_tokenizer_and_spans_cover_each_phrase(
    tokenizer: BertTokenizer,
) -> None:
    prompt = PromptSet.from_categories({"remote control": ["remote"], "forklift": []})
    (chunk,) = chunk_prompt(prompt, phrase_encoder(tokenizer), token_layout(tokenizer, 256))
    assert chunk.caption == "remote control . remote . forklift ."
    assert list(chunk.input_ids) == tokenizer(chunk.caption)["input_ids"]
    assert chunk.input_ids[0] == 101
    assert chunk.input_ids[-1] == 102
    decoded = [tokenizer.decode(list(chunk.input_ids[s:e])) for s, e in chunk.spans]
    assert decoded == ["remote control", "remote", "forklift"]
    assert all(chunk.input_ids[e] == 1012 for _, e in chunk.spans)


def test_long_prompt_is_split_into_chunks_of_whole_phrases(tokenizer: BertTokenizer) -> None:
    names = [f"object number {i}" for i in range(120)]  # 4 tokens each incl. "."
    prompt = PromptSet.from_categories(names)
    layout = token_layout(tokenizer, 256)
    chunks = chunk_prompt(prompt, phrase_encoder(tokenizer), layout)
    assert len(chunks) == 2
    assert all(len(c.input_ids) <= 256 for c in chunks)
    assert len(chunks[0].input_ids) > 256 - 4  # greedy: the first chunk is full
    covered = [i for c in chunks for i in c.phrase_indices]
    assert covered == list(range(120))
    for chunk in chunks:
        assert list(chunk.input_ids) == tokenizer(chunk.caption)["input_ids"]


def test_phrase_longer_than_the_limit_is_an_error() -> None:
    prompt = PromptSet.from_categories(["a b c d e f", "cat"])
    layout = TokenLayout(cls_id=101, sep_id=102, dot_id=1012, max_tokens=8)

    def encode(phrase: str) -> list[int]:
        return [7] * len(phrase.split())

    with pytest.raises(InvalidInputError, match="got 6 for 'a b c d e f'"):
        chunk_prompt(prompt, encode, layout)
    ok = chunk_prompt(PromptSet.from_categories(["a b c d e", "cat"]), encode, layout)
    assert [c.phrase_indices for c in ok] == [(0,), (1,)]


def test_inconsistent_prompt_set_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="one category index per phrase"):
        PromptSet(("cat",), ("cat", "kitten"), (0,))
    with pytest.raises(InvalidInputError, match="category indices"):
        PromptSet(("cat",), ("cat",), (1,))


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=40),
    limit=st.integers(16, 64),
)
def test_chunks_cover_every_phrase_once_within_the_limit(lengths: list[int], limit: int) -> None:
    prompt = PromptSet.from_categories([f"p{i}" for i in range(len(lengths))])
    layout = TokenLayout(cls_id=101, sep_id=102, dot_id=1012, max_tokens=limit)

    def encode(phrase: str) -> list[int]:
        return [5] * lengths[int(phrase[1:])]

    chunks = chunk_prompt(prompt, encode, layout)
    assert [i for c in chunks for i in c.phrase_indices] == list(range(len(lengths)))
    for chunk in chunks:
        assert len(chunk.input_ids) <= limit
        for index, (start, end) in zip(chunk.phrase_indices, chunk.spans, strict=True):
            assert end - start == lengths[index]
            assert chunk.input_ids[end] == 1012
    for first, second in itertools.pairwise(chunks):  # greedy: the next phrase did not fit
        assert len(first.input_ids) + lengths[second.phrase_indices[0]] + 1 > limit
