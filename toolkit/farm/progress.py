"""Progress of a farm run: a live rich table for people, or one JSON object per line for programs."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import defaultdict
from typing import Any, TextIO

from rich.markup import escape

from toolkit.output import to_jsonable


class JsonLines:
    """Every event as one JSON object on its own line (stdout), flushed at once."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        line = json.dumps(to_jsonable(event), sort_keys=True, separators=(",", ":"))
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _DeviceState:
    def __init__(self) -> None:
        self.total = 0
        self.ok = 0
        self.failed = 0
        self.skipped = 0
        self.retries = 0
        self.current = ""
        self.durations: list[float] = []
        self.quarantined = False

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.ok - self.failed - self.skipped)

    def eta_s(self) -> float | None:
        if not self.remaining:
            return 0.0
        if not self.durations:
            return None
        return self.remaining * sum(self.durations) / len(self.durations)


class LiveProgress:
    """A rich Live table on stderr: per device done / failed / skipped / remaining, current job, ETA."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.devices: dict[str, _DeviceState] = defaultdict(_DeviceState)
        self.messages: list[str] = []
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._live: Any = None

    def __enter__(self) -> LiveProgress:
        from rich.live import Live

        self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(None, None, None)
            self.console.line()

    def __call__(self, event: dict[str, Any]) -> None:
        with self._lock:
            HANDLERS.get(event.get("event", ""), _ignore)(self, event)
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(title="edgetk farm", title_justify="left", header_style="bold")
        for column in ("device", "done", "failed", "skipped", "remaining", "now", "ETA"):
            table.add_column(
                column, justify="right" if column in ("done", "failed", "skipped", "remaining", "ETA") else "left"
            )
        with self._lock:
            for name, state in sorted(self.devices.items()):
                now = "[red]quarantined[/red]" if state.quarantined else state.current
                table.add_row(
                    name,
                    str(state.ok),
                    str(state.failed),
                    str(state.skipped),
                    str(state.remaining),
                    now,
                    _eta(state.eta_s()),
                )
            etas = [s.eta_s() for s in self.devices.values()]
            overall = None if any(e is None for e in etas) else max(etas, default=0.0)
            lines = [f"elapsed {time.monotonic() - self.started:.0f} s, ETA {_eta(overall)}", *self.messages[-4:]]
        # Below the table, left-aligned and unwrapped by its width: store paths and errors stay readable.
        return Group(table, *(Text.from_markup(line) for line in lines))


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _ignore(progress: LiveProgress, event: dict[str, Any]) -> None:
    return None


def _on_started(progress: LiveProgress, event: dict[str, Any]) -> None:
    for name, count in (event.get("devices") or {}).items():
        progress.devices[name].total = count
    progress.messages.append(
        f"{event.get('pending')} of {event.get('planned')} job(s) to run; store {escape(str(event.get('store')))}"
    )


def _on_job_started(progress: LiveProgress, event: dict[str, Any]) -> None:
    attempt = f" (try {event['attempt']})" if event.get("attempt", 1) > 1 else ""
    progress.devices[event["device"]].current = f"{event.get('job', '')}{attempt}"


def _on_job_finished(progress: LiveProgress, event: dict[str, Any]) -> None:
    state = progress.devices[event["device"]]
    status = event.get("status")
    if status == "ok":
        state.ok += 1
        if event.get("duration_s"):
            state.durations.append(float(event["duration_s"]))
    elif status == "failed":
        state.failed += 1
        progress.messages.append(
            f"[red]failed[/red] {escape(str(event.get('job')))}: {escape(str(event.get('error')))}"
        )
    else:
        state.skipped += 1
    state.current = ""


def _on_retry(progress: LiveProgress, event: dict[str, Any]) -> None:
    progress.devices[event["device"]].retries += 1
    progress.messages.append(
        f"[yellow]retry[/yellow] {escape(event['device'])} in {event.get('delay_s', 0):.0f} s: {escape(str(event.get('error')))}"
    )


def _on_quarantined(progress: LiveProgress, event: dict[str, Any]) -> None:
    progress.devices[event["device"]].quarantined = True
    progress.messages.append(f"[red]{escape(str(event.get('reason')))}[/red]")


def _on_conversion(progress: LiveProgress, event: dict[str, Any]) -> None:
    verb = {
        "conversion_started": "converting",
        "conversion_finished": "converted",
        "conversion_failed": "[red]conversion failed[/red]",
    }
    progress.messages.append(
        f"{verb.get(event['event'], event['event'])} {escape(str(event.get('model')))} "
        + escape(", ".join(event.get("variants") or []))
    )


HANDLERS = {
    "farm_started": _on_started,
    "job_started": _on_job_started,
    "job_finished": _on_job_finished,
    "job_retry": _on_retry,
    "device_quarantined": _on_quarantined,
    "conversion_started": _on_conversion,
    "conversion_finished": _on_conversion,
    "conversion_failed": _on_conversion,
}
