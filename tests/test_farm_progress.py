"""The live farm table: figures per device, and messages below it that keep what events said."""

from __future__ import annotations

import io

from rich.console import Console

from toolkit.farm.progress import LiveProgress


def test_final_table_counts_jobs_and_shows_messages_verbatim():
    out = io.StringIO()
    store = "/data/farms/nightly [v2]/farm.results.db"
    with LiveProgress(Console(file=out, width=200, force_terminal=False)) as progress:
        progress(
            {"event": "farm_started", "devices": {"local": 2, "pi": 1}, "pending": 3, "planned": 3, "store": store}
        )
        progress({"event": "job_started", "device": "local", "job": "digits/fp32"})
        progress({"event": "job_finished", "device": "local", "job": "digits/fp32", "status": "ok", "duration_s": 1.0})
        progress({"event": "job_retry", "device": "pi", "delay_s": 2, "error": "lost: [Errno 104] reset"})
        error = "unreachable: [red] [Errno 111] Connection refused"
        progress({"event": "job_finished", "device": "pi", "job": "digits/int8", "status": "failed", "error": error})
    text = out.getvalue()
    cells = [line.strip("│ ").split(" │ ") for line in text.splitlines() if line.startswith("│")]
    rows = {cell[0].strip(): [c.strip() for c in cell[1:5]] for cell in cells}
    assert rows["local"] == ["1", "0", "0", "1"]  # done, failed, skipped, remaining
    assert rows["pi"] == ["0", "1", "0", "0"]
    assert f"3 of 3 job(s) to run; store {store}\n" in text  # on one line, brackets and all
    assert "retry pi in 2 s: lost: [Errno 104] reset\n" in text
    assert f"failed digits/int8: {error}\n" in text
