"""User input files (.npy / .npz in the source model's layout) for the measurement."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from toolkit.errors import BadInputError


def load_inputs(path: str) -> Any:
    """An .npy file is one input; an .npz holds inputs by name (or arr_0, arr_1, … in order)."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BadInputError(
            f"{os.path.basename(path)}: not a readable .npy/.npz file ({exc})",
            "save inputs with numpy.save (one input) or numpy.savez (several, keyed by input name)",
        ) from exc
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        arrays = {key: loaded[key] for key in loaded.files}
    if not arrays:
        raise BadInputError(f"{os.path.basename(path)}: the .npz holds no arrays", "save at least one input array")
    positional = [f"arr_{i}" for i in range(len(arrays))]
    if sorted(arrays) == sorted(positional):
        return [arrays[key] for key in positional]
    return arrays
