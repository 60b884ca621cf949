"""Does `pip install edgekit-runtime[litert]` work on an aarch64 board (Raspberry Pi 4/5, Jetson) from wheels
alone? Resolves the runtime's dependencies for manylinux aarch64 with `pip download --only-binary=:all:` and
lists the wheel chosen for each package. Exits non-zero when any dependency has no aarch64/pure-Python wheel.

    python benchmarks/check_aarch64_wheels.py [--python 3.11]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from results import write


def main() -> int:
    from edgekit.wheelhouse import download_command, runtime_requirements

    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default="3.11", help="Python version of the board (Raspberry Pi OS 12: 3.11).")
    args = ap.parse_args()
    requirements = runtime_requirements(litert=True)
    with tempfile.TemporaryDirectory() as dest:
        r = subprocess.run(download_command(Path(dest), "aarch64", args.python, requirements), capture_output=True,
                           text=True)
        wheels = sorted(p.name for p in Path(dest).glob("*.whl"))
    rows = [{"wheel": w, "platform": "aarch64" if "aarch64" in w else "any"} for w in wheels]
    ok = r.returncode == 0 and all(row["platform"] in ("aarch64", "any") for row in rows)
    notes = "All dependencies resolve to aarch64 or pure-Python wheels." if ok else \
        "FAILED: " + (r.stderr.strip().splitlines() or ["no output"])[-1]
    print(write("aarch64_wheels", f"edgekit-runtime[litert] on aarch64, Python {args.python}", rows,
                ["wheel", "platform"], {"requirements": requirements, "python": args.python, "ok": ok}, notes))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
