"""Text prompts for open-set detection: categories, synonym phrases, captions and token chunks.

A `PromptSet` maps every phrase the detector is asked to find (a category name or one of its
synonyms) back to exactly one category. `chunk_prompt` lays the phrases out as GroundingDINO
captions (`"[CLS] cat . remote control . [SEP]"`) and splits them into chunks of whole phrases when
the caption would exceed the text encoder's token limit; the detector runs once per chunk and merges
the candidates (see `autolabel.models.detection`).
"""

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from autolabel.models.errors import InvalidInputError

_WORD = re.compile(r"\w")
_SPACES = re.compile(r"\s+")
_DELIMITERS = (".", "?")


def normalize_phrase(text: str) -> str:
    """Lowercase, collapse whitespace, strip, and drop trailing "." characters.

    Args:
        text: One category name or synonym, e.g. `"  Remote Control. "`.

    Returns:
        The normalized phrase, e.g. `"remote control"`; may be empty.
    """
    return _SPACES.sub(" ", text.lower()).strip().rstrip(".").strip()


def _check_phrase(phrase: str, source: str) -> None:
    if not _WORD.search(phrase):
        raise InvalidInputError(
            f"expected a phrase with at least one letter or digit, got {source!r} "
            "(empty or punctuation only)"
        )
    for delimiter in _DELIMITERS:
        if delimiter in phrase:
            raise InvalidInputError(
                f"expected a phrase without {delimiter!r} (GroundingDINO splits phrases there), "
                f"got {source!r}; pass it as separate phrases instead"
            )


@dataclass(frozen=True, slots=True)
class PromptSet:
    """Categories to detect and the phrases that name them.

    Attributes:
        categories: Category names, normalized, unique, in the caller's order.
        phrases: Every phrase sent to the detector, normalized and unique, in prompt order.
        phrase_category: For each phrase, the index of its category in `categories`.
    """

    categories: tuple[str, ...]
    phrases: tuple[str, ...]
    phrase_category: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.phrases or len(self.phrases) != len(self.phrase_category):
            raise InvalidInputError(
                f"expected one category index per phrase and at least one phrase, got "
                f"{len(self.phrases)} phrases and {len(self.phrase_category)} indices"
            )
        if not all(0 <= c < len(self.categories) for c in self.phrase_category):
            raise InvalidInputError(
                f"expected category indices in [0, {len(self.categories)}), "
                f"got {list(self.phrase_category)}"
            )

    @classmethod
    def from_categories(
        cls, categories: Sequence[str] | Mapping[str, Sequence[str]]
    ) -> "PromptSet":
        """Build from category names, optionally with synonyms per category.

        Args:
            categories: `["person", "forklift"]`, or `{"car": ["car", "automobile"]}` where each
                category's own name is always a phrase too (added first if missing).

        Raises:
            InvalidInputError: No categories, an empty or punctuation-only name, a name containing
                "." or "?", or a phrase claimed by two different categories.
        """
        if isinstance(categories, str):
            raise InvalidInputError(
                f"expected a list of category names or a mapping, got the string {categories!r}; "
                "use PromptSet.from_caption for captions"
            )
        pairs = (
            categories.items() if isinstance(categories, Mapping) else ((c, ()) for c in categories)
        )
        names: list[str] = []
        phrases: dict[str, int] = {}
        for raw_name, synonyms in pairs:
            name = normalize_phrase(raw_name)
            _check_phrase(name, raw_name)
            if name not in names:
                names.append(name)
            index = names.index(name)
            for raw in (raw_name, *synonyms):
                phrase = normalize_phrase(raw)
                _check_phrase(phrase, raw)
                owner = phrases.setdefault(phrase, index)
                if owner != index:
                    raise InvalidInputError(
                        f"expected each phrase to name one category, got {phrase!r} for both "
                        f"{names[owner]!r} and {name!r}"
                    )
        if not names:
            raise InvalidInputError("expected at least one category, got an empty prompt")
        return cls(tuple(names), tuple(phrases), tuple(phrases.values()))

    @classmethod
    def from_caption(cls, caption: str) -> "PromptSet":
        """Build from a GroundingDINO caption; every "."-separated phrase is its own category.

        Args:
            caption: e.g. `"person . forklift . pallet ."`.

        Raises:
            InvalidInputError: A caption with no words (empty, or punctuation only), or a phrase
                containing "?".
        """
        parts = [normalize_phrase(part) for part in caption.split(".")]
        words = [part for part in parts if part]
        if not words or not any(_WORD.search(part) for part in words):
            raise InvalidInputError(
                f"expected a caption with at least one word, got {caption!r} "
                "(empty or punctuation only)"
            )
        return cls.from_categories(words)

    def category_of(self, phrase_index: int) -> str:
        """Category name of phrase number `phrase_index`."""
        return self.categories[self.phrase_category[phrase_index]]


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenLayout:
    """Special token ids and the token limit of the text encoder.

    Attributes:
        cls_id: Id of "[CLS]" (101 in bert-base-uncased).
        sep_id: Id of "[SEP]" (102).
        dot_id: Id of "." (1012), the phrase separator.
        max_tokens: Longest caption in tokens, special tokens included (256 for GroundingDINO).
    """

    cls_id: int
    sep_id: int
    dot_id: int
    max_tokens: int = 256


@dataclass(frozen=True, slots=True)
class PromptChunk:
    """One caption sent to the detector.

    Attributes:
        caption: e.g. `"cat . remote control ."`.
        input_ids: Token ids of `"[CLS] caption [SEP]"`, length <= `TokenLayout.max_tokens`.
        phrase_indices: Index into `PromptSet.phrases` of each phrase in this chunk.
        spans: For each phrase, `(start, end)` token positions in `input_ids`, end exclusive.
    """

    caption: str
    input_ids: tuple[int, ...]
    phrase_indices: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]


def _build_chunk(
    prompt: PromptSet, members: list[int], ids: list[list[int]], layout: TokenLayout
) -> PromptChunk:
    input_ids = [layout.cls_id]
    spans: list[tuple[int, int]] = []
    for index in members:
        spans.append((len(input_ids), len(input_ids) + len(ids[index])))
        input_ids += [*ids[index], layout.dot_id]
    input_ids.append(layout.sep_id)
    caption = " . ".join(prompt.phrases[i] for i in members) + " ."
    return PromptChunk(caption, tuple(input_ids), tuple(members), tuple(spans))


def chunk_prompt(
    prompt: PromptSet, encode: Callable[[str], Sequence[int]], layout: TokenLayout
) -> list[PromptChunk]:
    """Lay the phrases out as captions of whole phrases within the token limit.

    Each phrase costs its own tokens plus one "."; each caption adds "[CLS]" and "[SEP]". Phrases
    are packed greedily in prompt order, so a prompt that fits gives exactly one chunk.

    Args:
        prompt: Phrases to lay out.
        encode: Tokenizer of one phrase without special tokens (word pieces ids).
        layout: Special ids and token limit.

    Returns:
        Chunks covering every phrase exactly once, in prompt order.

    Raises:
        InvalidInputError: A phrase that alone does not fit the limit, or that has no tokens.
    """
    budget = layout.max_tokens - 2
    ids = [list(encode(phrase)) for phrase in prompt.phrases]
    chunks: list[PromptChunk] = []
    members: list[int] = []
    used = 0
    for index, tokens in enumerate(ids):
        cost = len(tokens) + 1
        if not tokens or cost > budget:
            raise InvalidInputError(
                f"expected each phrase to take 1 to {budget - 1} tokens, got {len(tokens)} "
                f"for {prompt.phrases[index]!r}"
            )
        if used + cost > budget:
            chunks.append(_build_chunk(prompt, members, ids, layout))
            members, used = [], 0
        members.append(index)
        used += cost
    chunks.append(_build_chunk(prompt, members, ids, layout))
    return chunks
