"""Label Studio brush RLE: our encoder and decoder round-trip and reject malformed streams.

Agreement with Label Studio's own converter (`label_studio_sdk.converter.brush`) is checked in its
venv by `tests/integration/review_tools/` (our regions decoded by it, its regions by us)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from autolabel.storage.brush_rle import decode_brush, decode_brush_values, encode_brush
from autolabel.storage.errors import FormatError


def _bits(fields: list[tuple[int, int]]) -> list[int]:
    """Pack (value, width) fields MSB first into bytes, zero-padded (a hand-made stream)."""
    text = "".join(f"{value:0{width}b}" for value, width in fields)
    text += "0" * (-len(text) % 8)
    return [int(text[i : i + 8], 2) for i in range(0, len(text), 8)]


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 23), st.integers(1, 31))))
def test_round_trip_of_random_masks(mask: np.ndarray) -> None:
    rle = encode_brush(mask)
    assert all(0 <= b <= 255 for b in rle)
    np.testing.assert_array_equal(
        decode_brush(rle, height=mask.shape[0], width=mask.shape[1]), mask
    )


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (61, 17), (300, 301)])
@pytest.mark.parametrize("fill", [False, True])
def test_empty_and_full_masks_of_odd_sizes(shape: tuple[int, int], fill: bool) -> None:
    mask = np.full(shape, fill)
    rle = encode_brush(mask)
    values = decode_brush_values(rle)
    assert values.size == shape[0] * shape[1] * 4
    assert set(np.unique(values).tolist()) == {255 if fill else 0}
    np.testing.assert_array_equal(decode_brush(rle, height=shape[0], width=shape[1]), mask)


def test_runs_longer_than_the_widest_length_field_are_split() -> None:
    mask = np.zeros((200, 200), dtype=np.bool_)  # 160,000 values: more than 2**16 in one run
    mask[150:, :] = True
    np.testing.assert_array_equal(decode_brush(encode_brush(mask), height=200, width=200), mask)


def test_header_and_pixel_layout() -> None:
    mask = np.array([[1, 0, 0], [0, 1, 1]], dtype=np.uint8)
    rle = encode_brush(mask)
    head = int.from_bytes(bytes(rle[:4]), "big")
    assert head == 2 * 3 * 4
    values = decode_brush_values(rle).reshape(2, 3, 4)
    assert (values == np.where(mask, 255, 0)[:, :, None]).all()  # RGBA, row-major


def test_decoder_reads_literal_blocks_and_other_sizes() -> None:
    # num=8, word size 4, length sizes (2, 3, 5, 8): a literal block of 3 values, then a
    # repeat block of 5 x 15.
    fields = [(8, 32), (3, 5), (1, 4), (2, 4), (4, 4), (7, 4)]
    fields += [(0, 1), (0, 2), (2, 2), (1, 4), (0, 4), (15, 4)]
    fields += [(1, 1), (1, 2), (4, 3), (15, 4)]
    assert decode_brush_values(_bits(fields)).tolist() == [1, 0, 15, 15, 15, 15, 15, 15]


def test_alpha_threshold_makes_the_mask() -> None:
    fields = [(8, 32), (7, 5), (2, 4), (3, 4), (7, 4), (15, 4)]
    fields += [(1, 1), (0, 2), (3, 3), (200, 8), (1, 1), (0, 2), (3, 3), (100, 8)]
    mask = decode_brush(_bits(fields), height=1, width=2)
    assert mask.tolist() == [[True, False]]


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ([], "header"),
        ([0, 0, 0, 8, 0x38], "header"),
        ([256] * 8, "0-255"),
        (_bits([(8, 32), (7, 5), (2, 4), (3, 4), (7, 4), (15, 4), (1, 1), (0, 2)]), "more bits"),
        (_bits([(4, 32), (7, 5), (2, 4), (3, 4), (7, 4), (15, 4), (1, 1), (0, 2), (7, 3)]), "past"),
    ],
)
def test_malformed_streams_are_format_errors(rle: list[int], message: str) -> None:
    with pytest.raises(FormatError, match=message):
        decode_brush_values(rle)


def test_size_mismatch_is_a_format_error() -> None:
    with pytest.raises(FormatError, match=r"2\*4\*4=32 values, got 24"):
        decode_brush(encode_brush(np.ones((3, 2), np.bool_)), height=2, width=3 + 1)
