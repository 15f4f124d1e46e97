"""A bounds-checked reader for FlatBuffers: the few offset and vtable lookups a .tflite file needs.

No `flatbuffers` package and no generated schema code: the device may have neither. Every read is
checked against the buffer's length, so a truncated or corrupted file raises FlatbufferError here
instead of crashing a native runtime later (tflite-runtime 2.14 and tf.lite segfault on them).
"""

from __future__ import annotations

import struct
from typing import Any

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")

# Scalar formats by name, used by Table.scalar and Table.scalars.
FORMATS = {
    "bool": "?",
    "int8": "b",
    "uint8": "B",
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}


class FlatbufferError(ValueError):
    """The bytes are not a well-formed flatbuffer (truncated, corrupted or not a flatbuffer)."""


class Buffer:
    """Bytes plus checked little-endian reads."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = data if isinstance(data, bytes) else memoryview(data).cast("B")
        self.size = len(self.data)

    def check(self, pos: int, length: int, what: str) -> None:
        if pos < 0 or length < 0 or pos + length > self.size:
            raise FlatbufferError(f"{what} at offset {pos} (+{length} bytes) lies outside the {self.size}-byte file")

    def read(self, fmt: struct.Struct, pos: int, what: str) -> Any:
        self.check(pos, fmt.size, what)
        return fmt.unpack_from(self.data, pos)[0]

    def u16(self, pos: int, what: str = "uint16") -> int:
        return self.read(_U16, pos, what)

    def i32(self, pos: int, what: str = "int32") -> int:
        return self.read(_I32, pos, what)

    def u32(self, pos: int, what: str = "uint32") -> int:
        return self.read(_U32, pos, what)

    def deref(self, pos: int, what: str) -> int:
        """Follow a uoffset_t stored at pos (offsets are relative to where they are stored)."""
        target = pos + self.u32(pos, what)
        self.check(target, 4, what)
        return target

    def root(self) -> Table:
        """The root table (the uoffset at byte 0)."""
        if self.size < 8:
            raise FlatbufferError(f"file is {self.size} bytes, too small to be a flatbuffer")
        return Table(self, self.deref(0, "root table"), "root")

    def identifier(self) -> bytes:
        """The 4-byte file identifier after the root offset (b'TFL3' for TFLite)."""
        self.check(4, 4, "file identifier")
        return bytes(self.data[4:8])


class Table:
    """One table: fields are looked up by id through its vtable."""

    __slots__ = ("buf", "name", "pos", "vtable", "vtable_len")

    def __init__(self, buf: Buffer, pos: int, name: str) -> None:
        self.buf = buf
        self.pos = pos
        self.name = name
        vtable = pos - buf.i32(pos, f"{name} vtable offset")
        self.vtable_len = buf.u16(vtable, f"{name} vtable")
        if self.vtable_len < 4 or self.vtable_len % 2:
            raise FlatbufferError(f"{name}: malformed vtable at offset {vtable}")
        buf.check(vtable, self.vtable_len, f"{name} vtable")
        table_len = buf.u16(vtable + 2, f"{name} vtable")
        buf.check(pos, table_len, f"{name} table")
        self.vtable = vtable
        for entry in range(4, self.vtable_len, 2):
            offset = buf.u16(vtable + entry)
            if offset and offset >= table_len:
                raise FlatbufferError(f"{name}: field {(entry - 4) // 2} points outside its table")

    def field(self, field_id: int) -> int:
        """Absolute position of a field, or 0 when absent."""
        entry = 4 + 2 * field_id
        if entry >= self.vtable_len:
            return 0
        offset = self.buf.u16(self.vtable + entry)
        return self.pos + offset if offset else 0

    def has(self, field_id: int) -> bool:
        return self.field(field_id) != 0

    def scalar(self, field_id: int, kind: str, default: Any = 0) -> Any:
        pos = self.field(field_id)
        if not pos:
            return default
        fmt = struct.Struct("<" + FORMATS[kind])
        return self.buf.read(fmt, pos, f"{self.name}.field{field_id}")

    def table(self, field_id: int, name: str) -> Table | None:
        pos = self.field(field_id)
        if not pos:
            return None
        return Table(self.buf, self.buf.deref(pos, name), name)

    def string(self, field_id: int, what: str = "string") -> str | None:
        raw = self.raw_bytes(field_id, what)
        if raw is None:
            return None
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FlatbufferError(f"{self.name}.{what}: not valid UTF-8") from exc

    def _vector(self, field_id: int, element_size: int, what: str) -> tuple[int, int] | None:
        """(start, count) of a vector field, checked to lie inside the buffer."""
        pos = self.field(field_id)
        if not pos:
            return None
        where = self.buf.deref(pos, f"{self.name}.{what}")
        count = self.buf.u32(where, f"{self.name}.{what} length")
        self.buf.check(where + 4, count * element_size, f"{self.name}.{what}")
        return where + 4, count

    def raw_bytes(self, field_id: int, what: str = "bytes") -> memoryview | None:
        span = self._vector(field_id, 1, what)
        if span is None:
            return None
        start, count = span
        return memoryview(self.buf.data)[start : start + count]

    def scalars(self, field_id: int, kind: str, what: str = "vector") -> tuple[Any, ...]:
        code = FORMATS[kind]
        size = struct.calcsize(code)
        span = self._vector(field_id, size, what)
        if span is None:
            return ()
        start, count = span
        return struct.unpack_from(f"<{count}{code}", self.buf.data, start)

    def tables(self, field_id: int, name: str) -> list[Table]:
        span = self._vector(field_id, 4, name + "s")
        if span is None:
            return []
        start, count = span
        return [Table(self.buf, self.buf.deref(start + 4 * i, name), f"{name}[{i}]") for i in range(count)]
