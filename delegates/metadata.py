"""The `edgetk` metadata entry the converter embeds in a .tflite (docs/internals.md)."""

from __future__ import annotations

import json
from typing import Any

from delegates.tflite_model import ModelSource, TFLiteModel, parse_model
from toolkit.errors import BadInputError

METADATA_NAME = "edgetk"
SCHEMA_PREFIX = "edgetk.metadata/"


def read_metadata(source: ModelSource | TFLiteModel) -> dict[str, Any] | None:
    """The edgetk metadata dict of a model, or None when the model carries none."""
    model = source if isinstance(source, TFLiteModel) else parse_model(source)
    raw = model.metadata_bytes(METADATA_NAME)
    if raw is None:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(
            f"the model's {METADATA_NAME!r} metadata is not valid JSON: {exc}",
            "re-convert the model with `edgetk convert`",
        ) from exc
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith(SCHEMA_PREFIX):
        raise BadInputError(
            f"the model's {METADATA_NAME!r} metadata has no {SCHEMA_PREFIX}N schema tag",
            "re-convert the model with `edgetk convert`",
        )
    return data
