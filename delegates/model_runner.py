"""ModelRunner: a TFLite interpreter that speaks the source model's layout and float values.

`open_model(path, choice)` verifies the file with our own flatbuffer reader (a truncated file
would segfault tflite-runtime 2.14 and tf.lite), creates the interpreter with the chosen delegate,
allocates it, and wraps it so callers pass inputs in the layout of the model they converted from
(edgetk metadata `perm`) and get float outputs back, whatever the quantization of the I/O tensors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from delegates.choice import DelegateChoice, as_choice
from delegates.metadata import read_metadata
from delegates.runtime import Runtime, get_runtime
from delegates.tflite_model import TFLiteModel, parse_model
from toolkit.errors import BadInputError, DelegateError

Inputs = Union[dict, list, tuple, np.ndarray]  # noqa: UP007 (runtime alias; the runner supports Python 3.9)
QUANTIZED_IO = ("int8", "uint8", "int16")
DELEGATE_NODE = "DELEGATE"


@dataclass(frozen=True)
class IOSpec:
    """One input or output tensor as the runtime sees it, plus its source-layout view."""

    index: int  # tensor index in the interpreter
    name: str  # TFLite tensor name
    source_name: str  # name in the source model (metadata) or the TFLite name
    shape: tuple[int, ...]  # TFLite shape
    dtype: np.dtype
    scale: float
    zero_point: int
    perm: tuple[int, ...] | None = None  # source -> TFLite axis order
    value_range: tuple[float, float] | None = field(default=None, compare=False)

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and self.dtype.name in QUANTIZED_IO

    @property
    def source_shape(self) -> tuple[int, ...]:
        if not self.perm:
            return self.shape
        return tuple(self.shape[i] for i in np.argsort(self.perm))

    def to_tflite(self, values: Any) -> np.ndarray:
        """Source-layout float (or integer) values -> the array set_tensor expects."""
        array = np.asarray(values)
        if self.perm:
            array = array.transpose(self.perm)
        if self.quantized:
            info = np.iinfo(self.dtype)
            q = np.round(array.astype(np.float64) / self.scale + self.zero_point)
            return np.clip(q, info.min, info.max).astype(self.dtype)
        return array.astype(self.dtype, copy=False)

    def from_tflite(self, array: np.ndarray) -> np.ndarray:
        """A raw output -> float values in the source layout."""
        if self.quantized:
            array = (array.astype(np.float32) - self.zero_point) * np.float32(self.scale)
        elif array.dtype.kind == "f" and array.dtype != np.float32:
            array = array.astype(np.float32)
        if self.perm:
            array = array.transpose(np.argsort(self.perm))
        return array


class ModelRunner:
    """An allocated interpreter plus the model's structure, metadata and I/O conversion."""

    def __init__(
        self,
        interpreter: Any,
        model: TFLiteModel,
        metadata: dict[str, Any] | None,
        runtime: Runtime,
        choice: DelegateChoice,
        path: Path,
        delegate_handles: list | None = None,
    ) -> None:
        self.interpreter = interpreter
        self.model = model
        self.metadata = metadata
        self.runtime = runtime
        self.choice = choice
        self.path = path
        # Keep delegate objects alive as long as the interpreter that uses them.
        self._delegate_handles = list(delegate_handles or [])
        self.input_details = interpreter.get_input_details()
        self.output_details = interpreter.get_output_details()
        self.inputs = _io_specs(self.input_details, _meta_io(metadata, "inputs"), model)
        self.outputs = _io_specs(self.output_details, _meta_io(metadata, "outputs"), None)

    # --- running -------------------------------------------------------------------------------

    def invoke(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Run once with source-layout float inputs; return float outputs by source name, in order."""
        arrays = self._ordered(inputs)
        raw = self.invoke_raw([spec.to_tflite(a) for spec, a in _zip(self.inputs, arrays)])
        return {spec.source_name: spec.from_tflite(out) for spec, out in _zip(self.outputs, raw)}

    def invoke_raw(self, inputs: Inputs) -> list[np.ndarray]:
        """Run once with arrays already in the TFLite layout and dtype; return raw output copies."""
        arrays = self._ordered(inputs)
        for spec, array in _zip(self.inputs, arrays):
            self._set_input(spec, np.asarray(array))
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(spec.index) for spec in self.outputs]

    def set_inputs(self, inputs: Inputs) -> None:
        """Convert and set inputs once (timed loops then call `interpreter.invoke()` alone)."""
        for spec, array in _zip(self.inputs, self._ordered(inputs)):
            self._set_input(spec, spec.to_tflite(array))

    def _set_input(self, spec: IOSpec, array: np.ndarray) -> None:
        if tuple(array.shape) != spec.shape:
            raise BadInputError(
                f"input {spec.source_name!r}: got shape {list(array.shape)}, the model takes "
                f"{list(spec.source_shape)} (source layout)",
                "pass arrays in the source model's layout and shape",
            )
        self.interpreter.set_tensor(spec.index, array)

    def _ordered(self, inputs: Inputs) -> list[Any]:
        """Inputs as a list in subgraph order, from a dict (source or TFLite names), list or array."""
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if isinstance(inputs, dict):
            return [self._by_name(inputs, spec) for spec in self.inputs]
        inputs = list(inputs)
        if len(inputs) != len(self.inputs):
            raise BadInputError(
                f"got {len(inputs)} input array(s), the model has {len(self.inputs)}",
                f"inputs in order: {', '.join(s.source_name for s in self.inputs)}",
            )
        return inputs

    def _by_name(self, inputs: dict, spec: IOSpec) -> Any:
        for key in (spec.source_name, spec.name):
            if key in inputs:
                return inputs[key]
        if len(self.inputs) == 1 and len(inputs) == 1:
            return next(iter(inputs.values()))
        raise BadInputError(
            f"no value for input {spec.source_name!r}; got {sorted(map(str, inputs))}",
            f"the model's inputs are {', '.join(s.source_name for s in self.inputs)}",
        )

    # --- helpers for callers -------------------------------------------------------------------

    def random_inputs(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Valid random inputs in the source layout (quantized inputs get representable values)."""
        rng = CounterRandom(seed)
        return {spec.source_name: _random_for(spec, rng) for spec in self.inputs}

    def delegation(self) -> dict[str, Any]:
        """Delegated nodes / total / partitions / operators left on the CPU, from the execution plan."""
        return delegation_from_ops(self.interpreter._get_ops_details())

    @property
    def int8_model(self) -> bool:
        """True when the graph computes in integers (full-integer or int16x8 quantization)."""
        return is_integer_model(self.model)

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime.info(),
            "delegate": self.choice.delegate,
            "threads": self.choice.threads,
            "inputs": [_io_dict(s) for s in self.inputs],
            "outputs": [_io_dict(s) for s in self.outputs],
        }


def open_model(
    path: str | Path,
    choice: DelegateChoice | str | None = None,
    threads: int | None = None,
    runtime: str | Runtime | None = None,
    *,
    delegate_options: dict[str, Any] | None = None,
    profile_delegates: dict[str, Any] | None = None,
    verify: bool = True,
    model: TFLiteModel | None = None,
) -> ModelRunner:
    """Open and allocate a model with one delegate choice; None is the plain CPU reference.

    `model` is this file already parsed (and so verified) by the caller: opening the same file
    several times then parses it once (a large model takes tens of milliseconds to parse).
    """
    path = Path(path)
    if model is None:
        model = parse_model(path) if verify else parse_model(path.read_bytes(), str(path))
    metadata = read_metadata(model)
    rt = runtime if isinstance(runtime, Runtime) else get_runtime(runtime)
    picked = as_choice(choice, threads=threads, options=delegate_options)
    handles = _delegate_handles(picked, rt, profile_delegates)
    interpreter = _create(rt, path, picked, handles)
    return ModelRunner(interpreter, model, metadata, rt, picked, path, handles)


def _delegate_handles(choice: DelegateChoice, rt: Runtime, profile_delegates: dict[str, Any] | None) -> list:
    if choice.delegate in ("cpu", "xnnpack"):
        return []
    from delegates.registry import load_delegate_library

    return [load_delegate_library(choice, rt, profile_delegates)]


def _create(rt: Runtime, path: Path, choice: DelegateChoice, handles: list) -> Any:
    try:
        interpreter = rt.interpreter(
            str(path), threads=choice.threads, default_delegates=choice.delegate == "xnnpack", delegates=handles
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise _open_error(path, choice, exc) from exc
    return interpreter


def _open_error(path: Path, choice: DelegateChoice, exc: Exception) -> Exception:
    text = " ".join(str(exc).split())
    custom = re.search(r"unresolved custom op: (\S+?)\.? .*?Node number (\d+)", text)
    if custom:
        return BadInputError(
            f"{path.name}: this runtime has no kernel for custom op {custom.group(1)} (node {custom.group(2)})",
            "the model needs a custom or Flex op: use a delegate or runtime that provides it, or re-convert without it",
        )
    if "unresolved custom op" in text.lower() or "didn't find op for builtin" in text.lower():
        return BadInputError(
            f"{path.name}: the runtime lacks an operator the model uses: {_short(text)}",
            "the model needs custom or newer ops; use a runtime/delegate that provides them or re-convert",
        )
    if choice.delegate not in ("cpu", "xnnpack"):
        return DelegateError(
            f"{path.name}: delegate {choice.delegate} failed: {_short(text)}",
            "try another delegate (e.g. --delegate xnnpack)",
        )
    return BadInputError(f"{path.name}: the runtime could not load the model: {_short(text)}")


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _zip(first: Any, second: Any) -> Any:
    """zip for sequences whose lengths were checked already (Python 3.9 has no strict=)."""
    return zip(first, second)  # noqa: B905


# --- I/O specs ------------------------------------------------------------------------------------


def _meta_io(metadata: dict[str, Any] | None, key: str) -> list[dict[str, Any]]:
    return [e for e in (metadata or {}).get(key) or [] if isinstance(e, dict)]


def _io_specs(details: list[dict[str, Any]], entries: list[dict[str, Any]], model: TFLiteModel | None) -> list[IOSpec]:
    """Pair runtime details with metadata entries: by TFLite name, else by position."""
    by_name = {e.get("name"): e for e in entries}
    specs = []
    for position, detail in enumerate(details):
        entry = by_name.get(detail["name"]) or (entries[position] if position < len(entries) else None)
        specs.append(_io_spec(detail, entry, model))
    return specs


def _io_spec(detail: dict[str, Any], entry: dict[str, Any] | None, model: TFLiteModel | None) -> IOSpec:
    scale, zero_point = detail.get("quantization") or (0.0, 0)
    dtype = np.dtype(detail["dtype"])
    index = int(detail["index"])
    return IOSpec(
        index=index,
        name=str(detail["name"]),
        source_name=str((entry or {}).get("source_name") or detail["name"]),
        shape=tuple(int(d) for d in detail["shape"]),
        dtype=dtype,
        scale=float(scale),
        zero_point=int(zero_point),
        perm=tuple(entry["perm"]) if entry and entry.get("perm") else None,
        value_range=_float_input_range(model, index) if model is not None and dtype.kind == "f" else None,
    )


def _float_input_range(model: TFLiteModel, tensor_index: int) -> tuple[float, float] | None:
    """The range a float input is quantized into by a QUANTIZE op right after it, if any."""
    graph = model.main
    for op in graph.operators:
        if op.name == "QUANTIZE" and op.inputs and op.inputs[0] == tensor_index:
            q = graph.tensors[op.outputs[0]].quantization
            if q is None:
                return None
            info = np.iinfo(graph.tensors[op.outputs[0]].dtype)
            low = (info.min - q.zero_point[0]) * q.scale[0]
            high = (info.max - q.zero_point[0]) * q.scale[0]
            return float(low), float(high)
    return None


class CounterRandom:
    """Seeded uniform numbers from splitmix64 over a counter, in numpy integer arithmetic.

    Valid random inputs need nothing more, and numpy 2 imports numpy.random lazily: ~8 ms (more on
    a small board) at every runner start, a tenth of a micro-model's whole profile.
    """

    _GAMMA = np.uint64(0x9E3779B97F4A7C15)
    _MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))

    def __init__(self, seed: int) -> None:
        # The seed is mixed first, so seeds 3 and 4 start far apart instead of one step apart.
        self.counter = _mix64((int(seed) + 1) * 0x9E3779B97F4A7C15 % (1 << 64))

    def _next(self, count: int) -> np.ndarray:
        """`count` pseudo-random uint64 (splitmix64: the counter's golden-ratio steps, mixed)."""
        steps = np.arange(1, count + 1, dtype=np.uint64)
        z = np.uint64(self.counter) + steps * self._GAMMA  # wraps modulo 2**64, as intended
        self.counter = (self.counter + count * 0x9E3779B97F4A7C15) % (1 << 64)
        z = (z ^ (z >> np.uint64(30))) * self._MIX[0]
        z = (z ^ (z >> np.uint64(27))) * self._MIX[1]
        return z ^ (z >> np.uint64(31))

    def uniform(self, low: float, high: float, size: tuple[int, ...]) -> np.ndarray:
        """Floats in [low, high)."""
        unit = (self._next(int(np.prod(size))) >> np.uint64(11)).astype(np.float64) * 2.0**-53
        return (low + (high - low) * unit).reshape(size)

    def integers(self, low: int, high: int, size: tuple[int, ...]) -> np.ndarray:
        """Integers in [low, high], both ends included (ranges here are tiny next to 2**64)."""
        span = np.uint64(int(high) - int(low) + 1)
        return (self._next(int(np.prod(size))) % span).astype(np.int64).reshape(size) + int(low)


def _mix64(z: int) -> int:
    """splitmix64's finalizer on one Python integer."""
    mask = (1 << 64) - 1
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def _random_for(spec: IOSpec, rng: CounterRandom) -> np.ndarray:
    shape = spec.source_shape
    if spec.quantized:
        info = np.iinfo(spec.dtype)
        q = rng.integers(info.min, info.max, size=shape)
        return ((q - spec.zero_point) * spec.scale).astype(np.float32)
    if spec.dtype.kind == "f":
        low, high = spec.value_range or (-1.0, 1.0)
        return rng.uniform(low, high, size=shape).astype(np.float32)
    if spec.dtype.kind == "b":
        return rng.integers(0, 1, size=shape).astype(bool)
    # Integer, unquantized inputs are usually indices (tokens, classes): keep them small and valid.
    return rng.integers(0, 1, size=shape).astype(spec.dtype)


def _io_dict(spec: IOSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "source_name": spec.source_name,
        "shape": list(spec.shape),
        "source_shape": list(spec.source_shape),
        "dtype": spec.dtype.name,
        "quantization": {"scale": spec.scale, "zero_point": spec.zero_point} if spec.quantized else None,
        "perm": list(spec.perm) if spec.perm else None,
    }


# --- delegation -----------------------------------------------------------------------------------


def delegation_from_ops(ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Count what the DELEGATE nodes replaced by walking back from each partition's outputs.

    After allocate_tensors the node list holds the original nodes followed by one DELEGATE node
    per partition; a partition replaced every original node on a path from its inputs to its
    outputs (FIELD-NOTES).
    """
    original = [op for op in ops if op["op_name"] != DELEGATE_NODE]
    partitions = [op for op in ops if op["op_name"] == DELEGATE_NODE]
    producer = {int(t): op["index"] for op in original for t in op["outputs"]}
    by_index = {op["index"]: op for op in original}
    delegated: set[int] = set()
    for part in partitions:
        delegated |= _replaced_nodes(part, producer, by_index)
    cpu_ops = [op["op_name"] for op in original if op["index"] not in delegated]
    return {
        "delegated_nodes": len(delegated),
        "total_nodes": len(original),
        "partitions": len(partitions),
        "cpu_ops": cpu_ops,
    }


def _replaced_nodes(part: dict[str, Any], producer: dict[int, int], by_index: dict[int, dict]) -> set[int]:
    boundary = {int(t) for t in part["inputs"]}
    frontier = [int(t) for t in part["outputs"]]
    seen: set[int] = set()
    while frontier:
        tensor = frontier.pop()
        node = producer.get(tensor)
        if tensor in boundary or node is None or node in seen:
            continue
        seen.add(node)
        frontier.extend(int(t) for t in by_index[node]["inputs"] if int(t) >= 0)
    return seen


def is_integer_model(model: TFLiteModel) -> bool:
    """True when the graph computes in 8-bit integers (full-integer quantization)."""
    from delegates.compat import is_full_integer

    return is_full_integer(model)
