"""Peak memory of the runner process: VmHWM (resettable on Linux), else ru_maxrss."""

from __future__ import annotations

import sys
from dataclasses import dataclass

STATUS = "/proc/self/status"
CLEAR_REFS = "/proc/self/clear_refs"


def _status_kib(field_name: str, path: str = STATUS) -> int | None:
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _ru_maxrss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return int(value) if sys.platform == "darwin" else int(value) * 1024


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS ('5' to clear_refs); False where the kernel does not allow it."""
    try:
        with open(CLEAR_REFS, "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


@dataclass
class MemoryProbe:
    """Baseline before the model loads, peak after the timed runs."""

    baseline_bytes: int | None = None
    source: str | None = None
    peak_was_reset: bool = False

    def start(self) -> None:
        """Reset the peak and record the baseline RSS, right before the model is loaded."""
        self.peak_was_reset = reset_peak()
        rss_kib = _status_kib("VmRSS")
        if rss_kib is not None:
            self.baseline_bytes = rss_kib * 1024
            self.source = "vmhwm"
        else:
            self.baseline_bytes = _ru_maxrss_bytes()
            self.source = "ru_maxrss"

    def finish(self) -> dict:
        """The memory section of the result (toolkit.results.Memory)."""
        peak_kib = _status_kib("VmHWM") if self.source == "vmhwm" else None
        peak = peak_kib * 1024 if peak_kib is not None else _ru_maxrss_bytes()
        source = "vmhwm" if peak_kib is not None else ("ru_maxrss" if peak is not None else None)
        delta = peak - self.baseline_bytes if peak is not None and self.baseline_bytes is not None else None
        return {
            "peak_rss_bytes": peak,
            "baseline_rss_bytes": self.baseline_bytes,
            "delta_bytes": delta,
            "source": source,
        }

    def warnings(self) -> list:
        if self.source == "vmhwm" and not self.peak_was_reset:
            return ["could not reset the peak RSS (/proc/self/clear_refs); peak includes the selection probes"]
        if self.source == "ru_maxrss":
            return ["no /proc on this device: peak memory is ru_maxrss since process start"]
        return []
