"""Label Studio's brush RLE: the bit-packed run-length code of a brush region's RGBA image.

A Label Studio `brushlabels` result carries `value.rle`, a list of byte values (0-255) holding a
big-endian (most significant bit first) bit stream, zero-padded to whole bytes:

- header: 32 bits `num` (how many values the stream decodes to: height * width * 4 for an RGBA
  image, row-major, channels last), 5 bits `word_size - 1` (bits per value), then four 4-bit
  fields `size_k - 1`, the bit widths a run length can be written in;
- then blocks until `num` values are out: 1 bit `repeat`, 2 bits `k` (which size), `size_k`
  bits `length - 1`; a repeat block is followed by one value written `length` times, a literal
  block by `length` values.

Label Studio draws a region from the alpha channel (the 4th value of each pixel). `encode_brush`
writes a mask as 0 / 255 in all four channels (repeat blocks only, with sizes 3, 4, 8 and 16 bits,
what Label Studio's own converter writes); `decode_brush` reads any stream of this format,
literal blocks and other word and length sizes included, as the editor's exports write them.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from autolabel.storage.errors import FormatError

CHANNELS = 4
WORD_BITS = 8
LENGTH_BITS = (3, 4, 8, 16)
_HEADER_BITS = 32 + 5 + 4 * 4


def _runs(values: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """(lengths, values) of the runs of equal values in a 1-D array."""
    if values.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    ends = np.flatnonzero(values[1:] != values[:-1])
    last = np.append(ends, values.size - 1)
    lengths = np.diff(np.append(-1, last))
    return lengths.astype(np.int64), values[last]


def _pack_fields(values: npt.NDArray[np.int64], widths: npt.NDArray[np.int64]) -> list[int]:
    """Write each value in its bit width, most significant bit first, zero-padded to bytes."""
    total = int(widths.sum())
    starts = np.cumsum(widths) - widths
    field_of_bit = np.repeat(np.arange(values.size), widths)
    offset = np.arange(total) - starts[field_of_bit]
    shift = widths[field_of_bit] - 1 - offset
    bits = ((values[field_of_bit] >> shift) & 1).astype(np.uint8)
    packed: list[int] = np.packbits(bits).tolist()
    return packed


def _length_class(lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Index into LENGTH_BITS of the smallest width that holds `length - 1`."""
    limits = np.array([1 << b for b in LENGTH_BITS], dtype=np.int64)
    return np.searchsorted(limits, lengths, side="left").astype(np.int64)


def encode_brush(mask_hw: npt.NDArray[np.bool_] | npt.NDArray[np.uint8]) -> list[int]:
    """Encode a mask as Label Studio brush RLE (the `value.rle` of a `brushlabels` result).

    Args:
        mask_hw: (H, W) bool or {0, 1} mask, row-major pixel frame, origin top-left.

    Returns:
        The byte values (0-255) of the stream; it decodes to H * W * 4 values, 255 in all four
        channels of a mask pixel and 0 elsewhere.
    """
    if mask_hw.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {mask_hw.shape}")
    pixels = np.where(np.asarray(mask_hw).ravel() != 0, 255, 0).astype(np.uint8)
    if pixels.size * CHANNELS >= 1 << 32:
        raise ValueError(f"expected fewer than 2**30 pixels, got {pixels.size}")
    lengths, run_values = _runs(pixels)
    lengths = lengths * CHANNELS  # every pixel run is a run of RGBA values
    longest = 1 << LENGTH_BITS[-1]
    pieces = -(-lengths // longest)  # runs too long for the widest length field are split
    piece_lengths = np.full(int(pieces.sum()), longest, dtype=np.int64)
    last_piece = np.cumsum(pieces) - 1
    piece_lengths[last_piece] = lengths - (pieces - 1) * longest
    piece_values = np.repeat(run_values, pieces).astype(np.int64)
    k = _length_class(piece_lengths)
    n = piece_lengths.size
    # per block: repeat flag (1 bit), size index (2 bits), length - 1, value
    fields = np.stack([np.ones(n, np.int64), k, piece_lengths - 1, piece_values], axis=1)
    widths = np.stack(
        [
            np.ones(n, np.int64),
            np.full(n, 2, np.int64),
            np.array(LENGTH_BITS, dtype=np.int64)[k],
            np.full(n, WORD_BITS, np.int64),
        ],
        axis=1,
    )
    header = [pixels.size * CHANNELS, WORD_BITS - 1, *(b - 1 for b in LENGTH_BITS)]
    header_widths = [32, 5, 4, 4, 4, 4]
    return _pack_fields(
        np.concatenate([np.array(header, np.int64), fields.ravel()]),
        np.concatenate([np.array(header_widths, np.int64), widths.ravel()]),
    )


class _BitReader:
    """Reads unsigned fields of a few bits from a big-endian bit stream."""

    def __init__(self, data: bytes) -> None:
        self._bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
        self._data = data
        self.pos = 0

    def read(self, width: int) -> int:
        """The next `width` (<= 32) bits as an unsigned integer."""
        end = self.pos + width
        if end > self._bits.size:
            raise FormatError(f"expected {width} more bits in the brush RLE at bit {self.pos}")
        first, last = self.pos // 8, (end + 7) // 8
        chunk = int.from_bytes(self._data[first:last], "big")
        value = (chunk >> (last * 8 - end)) & ((1 << width) - 1)
        self.pos = end
        return value

    def read_words(self, count: int, width: int) -> npt.NDArray[np.int64]:
        """The next `count` fields of `width` bits each."""
        end = self.pos + count * width
        if end > self._bits.size:
            raise FormatError(f"expected {count} words of {width} bits at bit {self.pos}")
        bits = self._bits[self.pos : end].reshape(count, width).astype(np.int64)
        self.pos = end
        return bits @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))


def decode_brush_values(rle: Sequence[int]) -> npt.NDArray[np.uint32]:
    """Decode a brush RLE stream to its flat values (for an image: H * W * 4, channels last).

    Raises:
        FormatError: Not a list of byte values, or a stream that ends before `num` values.
    """
    data = np.asarray(rle)
    if data.ndim != 1 or data.dtype.kind not in "iu" or data.size < -(-_HEADER_BITS // 8):
        raise FormatError("expected the brush RLE as a list of byte values, header included")
    if data.min() < 0 or data.max() > 255:
        raise FormatError("expected the brush RLE as byte values 0-255")
    reader = _BitReader(data.astype(np.uint8).tobytes())
    num = reader.read(32)
    word_size = reader.read(5) + 1
    sizes = [reader.read(4) + 1 for _ in range(4)]
    out = np.zeros(num, dtype=np.uint32)
    i = 0
    while i < num:
        repeat = reader.read(1)
        length = reader.read(sizes[reader.read(2)]) + 1
        if i + length > num:
            raise FormatError(f"expected a brush RLE of {num} values, got a run past its end")
        if repeat:
            out[i : i + length] = reader.read(word_size)
        else:
            out[i : i + length] = reader.read_words(length, word_size)
        i += length
    return out


def decode_brush(
    rle: Sequence[int], *, height: int, width: int, min_alpha: int = 128
) -> npt.NDArray[np.bool_]:
    """Decode a brush RLE to an (H, W) bool mask: pixels whose alpha is at least `min_alpha`.

    Raises:
        FormatError: The stream is malformed or does not hold height * width RGBA pixels.
    """
    values = decode_brush_values(rle)
    if values.size != height * width * CHANNELS:
        raise FormatError(
            f"expected a brush RLE of {height}*{width}*{CHANNELS}={height * width * CHANNELS} "
            f"values, got {values.size}"
        )
    return values.reshape(height, width, CHANNELS)[:, :, CHANNELS - 1] >= min_alpha
