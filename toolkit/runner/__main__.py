"""Entry point of runner.pyz (and `python -m toolkit.runner`).

python3 runner.pyz profile <request token>   supervisor: measure in a child, print one framed document
python3 runner.pyz measure <request.json>    the child (started by the supervisor)
"""

from __future__ import annotations

import os
import sys
import zipfile


def child_command() -> tuple:
    """How to start the measuring child: this zipapp again, or the package from a source tree."""
    me = os.path.abspath(sys.argv[0])
    if zipfile.is_zipfile(me):
        return [sys.executable, me], None
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


if __name__ == "__main__":
    raise SystemExit(main())
