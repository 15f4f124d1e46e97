"""`make demo`: the main job on the shipped example, with the exact commands a user would type.

1. convert examples/digits/digits.onnx to every variant and print the accuracy table,
2. profile the fp32 and int8 variants on this machine, side by side,
3. run the example farm on the local device and write demo-out/report.html.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = Path("demo-out")  # relative to the repository: the commands shown are the commands run
EDGETK = shutil.which("edgetk") or str(Path(sys.executable).with_name("edgetk"))


def edgetk(*args: str) -> None:
    """Show the command as a user would type it, then run it; stop the demo if it fails."""
    print(f"\n$ edgetk {shlex.join(args)}", flush=True)
    proc = subprocess.run([EDGETK, *args], cwd=REPO, check=False)
    if proc.returncode != 0:
        print(f"demo: `edgetk {args[0]}` failed with exit code {proc.returncode}", file=sys.stderr)
        raise SystemExit(proc.returncode)


def main() -> int:
    (REPO / OUT).mkdir(exist_ok=True)
    digits = OUT / "digits"
    edgetk(
        "convert",
        "examples/digits/digits.onnx",
        "-o",
        str(digits),
        "--quant",
        "all",
        "--calib",
        "examples/digits/calib.npy",
        "--eval",
        "examples/digits/eval.npz",
    )
    # Both variants on this machine, side by side over one runner session.
    edgetk(
        "profile",
        str(digits / "digits.fp32.tflite"),
        str(digits / "digits.int8.tflite"),
        "--device",
        "local",
        "-o",
        str(OUT / "profile.json"),
    )
    store = OUT / "farm.results.db"
    edgetk("farm", "run", "examples/farm.yaml", "--store", str(store), "--cache", str(OUT / "farm-cache"))
    edgetk("report", str(store), "-o", str(OUT / "report.html"))
    print(f"\ndemo: done. Open {OUT / 'report.html'} in a browser.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
