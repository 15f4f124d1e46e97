"""DelegateChoice: what to apply when opening a model (a delegate, its library, options, threads)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from toolkit.errors import ConfigError

CPU = "cpu"  # the plain builtin kernels, no default delegates: the numerical reference
XNNPACK = "xnnpack"  # the runtime's built-in XNNPACK (applied as a default delegate)
EXTERNAL_PREFIX = "external:"


@dataclass(frozen=True)
class DelegateChoice:
    """One configuration to open a model with."""

    delegate: str  # registry name (cpu, xnnpack, gpu, edgetpu, ...) or "external"
    threads: int | None = None
    options: tuple[tuple[str, str], ...] = ()  # sorted key/value pairs, passed to the library as strings
    library: str | None = None  # explicit library path (external:/path, or a profile's path)

    @property
    def label(self) -> str:
        """Short name used in reports: `xnnpack`, `external:/opt/lib.so`."""
        return f"{EXTERNAL_PREFIX}{self.library}" if self.delegate == "external" else self.delegate

    @property
    def key(self) -> str:
        """Label plus thread count: the key of auto-selection measurements (`xnnpack/2t`)."""
        return f"{self.label}/{self.threads}t" if self.threads else self.label

    def options_dict(self) -> dict[str, str]:
        return dict(self.options)

    def to_dict(self) -> dict[str, Any]:
        return {
            "delegate": self.label,
            "threads": self.threads,
            "options": self.options_dict(),
            "library": self.library,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DelegateChoice:
        choice = parse_choice(str(data.get("delegate") or CPU))
        return replace(
            choice,
            threads=data.get("threads"),
            options=_freeze(data.get("options")),
            library=data.get("library") or choice.library,
        )


def parse_choice(text: str) -> DelegateChoice:
    """`xnnpack`, `gpu`, `external:/path/lib.so` -> DelegateChoice (names are checked later)."""
    text = text.strip()
    if text.lower().startswith(EXTERNAL_PREFIX):
        path = text[len(EXTERNAL_PREFIX) :].strip()
        if not path:
            raise ConfigError("external: needs a library path", "write it as external:/path/to/libdelegate.so")
        return DelegateChoice("external", library=path)
    if not text:
        raise ConfigError("empty delegate name", "name a delegate, e.g. xnnpack")
    return DelegateChoice(text.lower())


def as_choice(
    choice: DelegateChoice | str | None, *, threads: int | None = None, options: dict[str, Any] | None = None
) -> DelegateChoice:
    """Normalize open_model's `choice` argument; explicit threads/options override the choice's."""
    picked = DelegateChoice(CPU) if choice is None else choice
    if isinstance(picked, str):
        picked = parse_choice(picked)
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"threads must be a whole number >= 1, got {threads!r}", "e.g. --threads 4")
        picked = replace(picked, threads=threads)
    if options:
        picked = replace(picked, options=_freeze({**picked.options_dict(), **options}))
    return picked


def _freeze(options: dict[str, Any] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), _option_text(v)) for k, v in (options or {}).items()))


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
