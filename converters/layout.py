"""Layout permutations between a source model (often NCHW) and its TFLite model (NHWC).

`perm` follows docs/internals.md: `tflite_array = source_array.transpose(perm)`; None means the
layouts are identical. Shapes alone are ambiguous whenever dimensions repeat or equal 1, so the
worker confirms every permutation numerically against the source model with `match_outputs`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

# Channels-first to channels-last, by rank: the permutation converters normally apply.
CHANNELS_LAST = {3: [0, 2, 1], 4: [0, 2, 3, 1], 5: [0, 2, 3, 4, 1]}
LAYOUT_NAMES = {
    (3, True): ("NCW", "NWC"),
    (4, True): ("NCHW", "NHWC"),
    (5, True): ("NCDHW", "NDHWC"),
}
# Relative L2 error under which a float32 TFLite output counts as the same tensor as the source's.
MATCH_TOLERANCE = 1e-3


def candidate_perms(source_shape: Sequence[int], target_shape: Sequence[int]) -> list[list[int] | None]:
    """Permutations that turn source_shape into target_shape, most plausible first."""
    source, target = tuple(source_shape), tuple(target_shape)
    if len(source) != len(target) or sorted(source) != sorted(target):
        return []
    found: list[list[int] | None] = []
    if source == target:
        found.append(None)
    preferred = CHANNELS_LAST.get(len(source))
    if preferred and tuple(source[i] for i in preferred) == target:
        found.append(preferred)
    if len(source) <= 6:
        for perm in itertools.permutations(range(len(source))):
            as_list = list(perm)
            if as_list in (preferred, list(range(len(source)))):
                continue
            if tuple(source[i] for i in perm) == target:
                found.append(as_list)
    return found


def apply_perm(array: np.ndarray, perm: list[int] | None) -> np.ndarray:
    return array if perm is None else np.ascontiguousarray(array.transpose(perm))


def undo_perm(array: np.ndarray, perm: list[int] | None) -> np.ndarray:
    return array if perm is None else np.ascontiguousarray(array.transpose(np.argsort(perm)))


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """||actual - expected|| / ||expected|| (absolute error when expected is all zeros)."""
    actual = actual.astype(np.float64).ravel()
    expected = expected.astype(np.float64).ravel()
    scale = float(np.linalg.norm(expected))
    difference = float(np.linalg.norm(actual - expected))
    return difference / scale if scale > 0 else difference


def match_outputs(
    reference: dict[str, np.ndarray], converted: list[np.ndarray]
) -> tuple[list[tuple[str, list[int] | None]] | None, float]:
    """Pair every converted output with a reference output and the perm that makes them equal.

    Returns (pairs in converted order, worst relative error), or (None, best error seen) when some
    converted output matches no reference output under any permutation.
    """
    pairs: list[tuple[str, list[int] | None]] = []
    worst = 0.0
    taken: set[str] = set()
    for array in converted:
        best: tuple[float, str, list[int] | None] | None = None
        for name, expected in reference.items():
            if name in taken or expected.size != array.size:
                continue
            for perm in candidate_perms(expected.shape, array.shape):
                error = relative_error(array, apply_perm(expected, perm))
                if best is None or error < best[0]:
                    best = (error, name, perm)
                if error <= MATCH_TOLERANCE:
                    break
            if best is not None and best[0] <= MATCH_TOLERANCE:
                break
        if best is None or best[0] > MATCH_TOLERANCE:
            return None, best[0] if best is not None else float("inf")
        taken.add(best[1])
        pairs.append((best[1], best[2]))
        worst = max(worst, best[0])
    return pairs, worst


def layout_names(perm: list[int] | None, source_guess: str | None, rank: int) -> tuple[str | None, str | None]:
    """(source layout, TFLite layout) names for the metadata; None for non-image tensors."""
    if perm is not None:
        return LAYOUT_NAMES.get((rank, perm == CHANNELS_LAST.get(rank)), (None, None))
    return (source_guess, source_guess) if rank == 4 else (None, None)
