"""Greedy one-to-one matching of scored candidates to reference objects by IoU (COCO's rule).

Candidates are taken best first; each takes the unmatched reference it overlaps most (the lowest
index on a tie) when that IoU reaches the threshold, and is unmatched otherwise. A reference is
matched at most once. The quality report (predictions against reviewed labels) and threshold
tuning (detector candidates against reviewed labels) both match this way.
"""

from typing import Any

import numpy as np
import numpy.typing as npt


def greedy_match(
    ious_kl: npt.NDArray[np.floating[Any]], *, iou_threshold: float
) -> npt.NDArray[np.intp]:
    """Match candidates (rows) to references (columns), one to one, in row order.

    Args:
        ious_kl: (K, L) IoU of each candidate with each reference (mask or box IoU, any frame),
            rows ordered best candidate first.
        iou_threshold: Least IoU of a match, > 0.

    Returns:
        (K,) intp: the column each candidate matched, or -1 where it matched none.
    """
    if ious_kl.ndim != 2:
        raise ValueError(f"expected (K, L) IoUs, got shape {ious_kl.shape}")
    matched = np.full(ious_kl.shape[0], -1, dtype=np.intp)
    free = np.ones(ious_kl.shape[1], dtype=np.bool_)
    for row in range(ious_kl.shape[0]):
        if not free.any():
            break
        overlap = np.where(free, ious_kl[row], -1.0)
        best = int(np.argmax(overlap))
        if overlap[best] >= iou_threshold:
            free[best] = False
            matched[row] = best
    return matched
