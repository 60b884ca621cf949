"""`edgekit wheelhouse`: what a board with no network needs to install the runtime, built on a machine with one.

The directory holds the edgekit-runtime wheel, built from the source beside this edgekit, and a wheel of every
dependency for the board's platform and Python, chosen by pip from the package index (binary wheels only: a board
should not compile). `wheelhouse.json` lists each wheel's sha256 and the install command, which needs no index:

    pip install --no-index --find-links WHEELHOUSE 'edgekit-runtime[litert]'
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import click

from edgekit_runtime.errors import UserError
from edgekit_runtime.files import atomic_directory
from edgekit_runtime.model_dir import sha256_file

RUNTIME_SOURCE = Path(__file__).resolve().parents[1] / "runtime"
# manylinux tags pip may pick for each board CPU (Raspberry Pi OS 12 and JetPack 6 have glibc 2.35 or newer)
PLATFORM_TAGS = {
    "aarch64": ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64"),
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64"),
}
MANIFEST = "wheelhouse.json"


def runtime_requirements(litert: bool) -> list[str]:
    """edgekit-runtime's dependencies (with the LiteRT extra when `litert`), from its pyproject.toml."""
    path = RUNTIME_SOURCE / "pyproject.toml"
    if not path.is_file():
        raise UserError(f"{path}: edgekit-runtime's source is not beside this edgekit; a wheelhouse is built from a "
                        "source checkout")
    project = tomllib.loads(path.read_text())["project"]
    return project["dependencies"] + (project["optional-dependencies"]["litert"] if litert else [])


def download_command(dest: Path, platform: str, python: str, requirements: list[str]) -> list[str]:
    """`pip download` of binary wheels of `requirements` for another machine's platform and Python."""
    tags = [a for tag in PLATFORM_TAGS[platform] for a in ("--platform", tag)]
    return [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version", python,
            "--implementation", "cp", "--dest", str(dest), *tags, *requirements]


def _pip(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        reason = (r.stderr.strip().splitlines() or r.stdout.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"{what} failed: {reason}")


def build_wheelhouse(out: str, platform: str = "aarch64", python: str = "3.11", litert: bool = True,
                     overwrite: bool = False) -> dict:
    """Write the wheelhouse directory `out` atomically; return its manifest."""
    if platform not in PLATFORM_TAGS:
        raise UserError(f"unknown platform {platform!r}; choose one of {', '.join(PLATFORM_TAGS)}")
    if not re.fullmatch(r"3\.\d{1,2}", python):
        raise UserError(f"--python takes the board's Python as MAJOR.MINOR, e.g. 3.11; got {python!r}")
    requirements = runtime_requirements(litert)
    with atomic_directory(out, overwrite=overwrite) as tmp, tempfile.TemporaryDirectory() as build:
        # built from a copy: setuptools builds in the source tree and would leave build/ and *.egg-info there
        source = Path(build) / "runtime"
        shutil.copytree(RUNTIME_SOURCE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        _pip([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(tmp), str(source)],
             "building the edgekit-runtime wheel")
        _pip(download_command(tmp, platform, python, requirements),
             f"fetching wheels for {platform}, Python {python}")
        extra = "[litert]" if litert else ""
        manifest = {"platform": platform, "python": python, "requirements": requirements,
                    "wheels": {w.name: sha256_file(w) for w in sorted(tmp.glob("*.whl"))},
                    "install": f"pip install --no-index --find-links WHEELHOUSE 'edgekit-runtime{extra}'"}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _bundle_has_tflite(bundle: str) -> bool:
    from edgekit_runtime.model_dir import load_bundle

    return any(m.format == "tflite" for m in load_bundle(bundle, trust=[]).models)


@click.command("wheelhouse")
@click.option("--platform", type=click.Choice(tuple(PLATFORM_TAGS)), default="aarch64", show_default=True,
              help="The board's CPU: aarch64 (Raspberry Pi 4/5, Jetson) or x86_64.")
@click.option("--python", "python", default="3.11", show_default=True,
              help="The board's Python, MAJOR.MINOR (Raspberry Pi OS 12: 3.11).")
@click.option("--bundle", type=click.Path(exists=True),
              help="Add the LiteRT extra only when this bundle holds a TFLite model [default: always add it].")
@click.option("--no-litert", is_flag=True, help="Leave out the LiteRT extra (ONNX models only).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Wheelhouse directory to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing wheelhouse.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def wheelhouse_command(platform, python, bundle, no_litert, out, overwrite, as_json):
    """Build an offline wheelhouse: edgekit-runtime and every dependency as wheels for the board's platform and
    Python, so that a board without network installs with `pip install --no-index --find-links DIR`."""
    litert = not no_litert and (bundle is None or _bundle_has_tflite(bundle))
    m = build_wheelhouse(out, platform, python, litert, overwrite)
    if as_json:
        click.echo(json.dumps(m, indent=2))
        return
    for name in m["wheels"]:
        click.echo(f"wheel        {name}")
    click.echo(f"wrote        {out} ({len(m['wheels'])} wheels for {platform}, Python {python}; sha256 in {MANIFEST})")
    click.echo(f"on the board {m['install'].replace('WHEELHOUSE', Path(out).name)}")
