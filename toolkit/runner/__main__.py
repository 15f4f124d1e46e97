"""Entry point of runner.pyz (and `python -m toolkit.runner`).

python3 runner.pyz profile <request token>   supervisor: measure in a child, print one framed document
python3 runner.pyz measure <request.json>    the child (started by the supervisor)
"""

from __future__ import annotations

import gc

from toolkit.runner.clock import mark_entry

mark_entry()  # first: the runner's own clock starts here (device_time_s, phases)
# Start-up creates objects that live until the end: collecting them is wasted work. The measuring
# child freezes them and turns the collector back on before it loads a model.
gc.disable()

import os  # noqa: E402
import sys  # noqa: E402
import zipimport  # noqa: E402  (built in: `zipfile` would cost ~10 ms at every start)


def child_command() -> tuple:
    """How to start the measuring child: this zipapp again, or the package from a source tree."""
    loader = globals().get("__loader__")
    if isinstance(loader, zipimport.zipimporter):
        return [sys.executable, os.path.abspath(loader.archive)], None
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return [sys.executable, "-m", "toolkit.runner"], env


def main(argv: list | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] not in ("profile", "measure"):
        sys.stderr.write(__doc__ or "")
        return 2
    command, value = args
    if command == "measure":
        from toolkit.runner.measure import main as measure_main

        return measure_main(value)
    from toolkit.runner.protocol import decode_request
    from toolkit.runner.supervisor import Supervisor

    prefix, env = child_command()
    return Supervisor(decode_request(value), prefix, env).run()


def exit_now(status: int) -> None:
    """Leave without the interpreter's teardown: the answer is flushed and nothing else is left to
    clean, while tearing down every module would keep the controller waiting a few ms more."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)


if __name__ == "__main__":
    exit_now(main())
