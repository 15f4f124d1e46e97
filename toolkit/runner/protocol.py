"""How the controller and the runner talk: the request in, one marked JSON document out.

The request travels as one base64 argument (no quoting traps on any shell). The answer is a JSON
document framed by marker lines carrying a per-run nonce, so whatever TFLite or a delegate prints
on stdout can never be mistaken for the result. Used on both sides; stdlib only.
"""

from __future__ import annotations

import base64
import json
from typing import Any

# Exit statuses of the runner's `profile` command. 0 carries a result document; ERROR_STATUS
# carries {"error": ToolkitError.to_dict()}. Anything else is a crash or a broken device setup.
OK_STATUS = 0
ERROR_STATUS = 97

BEGIN = "<<<edgetk-document {nonce}>>>"
END = "<<<end-edgetk-document {nonce}>>>"


def encode_request(request: dict[str, Any]) -> str:
    """Encode a request as one shell-safe token."""
    raw = json.dumps(request, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_request(token: str) -> dict[str, Any]:
    """Decode a token made by `encode_request`."""
    return json.loads(base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8"))


def frame(document: dict[str, Any], nonce: str) -> str:
    """Wrap a JSON document in marker lines (leading newline: noise may lack one)."""
    return frame_text(json.dumps(document, separators=(",", ":"), allow_nan=False), nonce)


def frame_text(body: str, nonce: str) -> str:
    """`frame` for a document that is JSON text already (the runner passes its result on unparsed)."""
    return "\n" + BEGIN.format(nonce=nonce) + "\n" + body + "\n" + END.format(nonce=nonce) + "\n"


def with_fields(body: str, fields: dict[str, Any]) -> str:
    """The JSON object text `body` with `fields` added, without parsing it.

    A result can hold a few hundred thousand samples: decoding and re-encoding it to add three
    keys would cost more than the runner's whole start-up.
    """
    head = body.rstrip()
    if not head.endswith("}"):
        raise ValueError("not a JSON object")
    extra = json.dumps(fields, separators=(",", ":"), allow_nan=False)
    if head[:-1].rstrip().endswith("{"):  # an empty object
        return extra
    return head[:-1] + ("," + extra[1:] if fields else "}")


def unframe(stdout: str, nonce: str) -> dict[str, Any] | None:
    """Find the framed document in `stdout`; None when there is none (the runner died early)."""
    begin, end = BEGIN.format(nonce=nonce), END.format(nonce=nonce)
    start = stdout.rfind(begin)
    if start < 0:
        return None
    stop = stdout.find(end, start)
    if stop < 0:
        return None
    body = stdout[start + len(begin) : stop].strip()
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None
