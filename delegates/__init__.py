"""Device-side TFLite runtime shim, delegate registry, model inspection and delegate selection.

Imports only the standard library, numpy, one TFLite runtime (lazily) and toolkit.errors, so it
runs inside the device runner zipapp (docs/internals.md, "Delegates API").
"""

from __future__ import annotations

from typing import Any

from delegates.choice import DelegateChoice, parse_choice
from delegates.metadata import read_metadata
from delegates.model_runner import ModelRunner, delegation_from_ops, open_model
from delegates.runtime import Runtime, get_runtime, installed_runtimes
from delegates.tflite_model import TFLiteModel, parse_model

__all__ = [
    "DelegateChoice",
    "ModelRunner",
    "Runtime",
    "TFLiteModel",
    "delegation_from_ops",
    "get_runtime",
    "installed_runtimes",
    "load_interpreter",
    "open_model",
    "parse_choice",
    "parse_model",
    "read_metadata",
    "select_delegate",
]


def select_delegate(model_path: Any, request: Any = None, **kwargs: Any) -> Any:
    """Try delegates in order (or `auto`) with fallback; return a SelectionReport (see delegates.selection)."""
    from delegates.selection import select_delegate as _select

    return _select(model_path, request, **kwargs)


def load_interpreter(model_path: Any, delegates: Any = None, threads: int | None = None, **kwargs: Any) -> Any:
    """Select a delegate and open the model with it: returns (ModelRunner, SelectionReport)."""
    from delegates.selection import load_interpreter as _load

    return _load(model_path, delegates, threads=threads, **kwargs)
