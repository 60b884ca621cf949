"""`edgekit deploy`: put a bundle on boards that have no network, over SSH, and switch to it only when it verifies
and does not run slower than what runs now.

On a board everything lives under ROOT (`edgekit/` in the login's home unless --root says otherwise):

    ROOT/runtimes/RID/        a venv with edgekit-runtime, installed from a wheelhouse only (`pip --no-index`);
                              RID: the wheelhouse's id (its manifest's sha256), so an unchanged runtime is reused
    ROOT/bundles/BID/         bundles; BID: the sha256 of the bundle's manifest (which lists every file's sha256)
                              and of its signature, if any
    ROOT/releases/BID-RID/    `bundle` and `runtime` links, and `bench.json` (`edgekit bench --quick` on this board)
    ROOT/active, previous     links to releases: what runs, and what `--rollback` returns to
    ROOT/incoming/            copies in progress; nothing in it is ever run
    ROOT/deploy.json          the deployment history

One deployment of one board: copy the bundle (and the wheelhouse, unless that runtime is already there) as one tar
stream into incoming/; install the runtime into its own venv; verify the bundle with it; bench it and compare with
the active release's bench (a slower bundle is refused unless --force); then point `active` at the new release by
an atomic rename of a link, so a service (`--service`) always starts a complete bundle with the runtime it was
verified with. A copy cut off half-way, a failed install, verify or bench leave `active` as it was.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shlex
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import click

from edgekit_runtime.cli import REGRESSION_EXIT
from edgekit_runtime.errors import UserError
from edgekit_runtime.model_dir import MANIFEST, load_bundle
from edgekit_runtime.signing import SIGNATURE

from .wheelhouse import MANIFEST as WHEELHOUSE_MANIFEST

DEFAULT_ROOT = "edgekit"
SERVICE = "edgekit.service"
SSH_TIMEOUT = 15  # seconds to connect; a board that is off must not hang a fleet deployment

# --- what runs on the board (its own python3, standard library only; arguments in sys.argv) ---

_FACTS = r"""
import json, os, platform, sys
root = os.path.abspath(os.path.expanduser(sys.argv[1]))
def link(name):
    p = os.path.join(root, name)
    return os.path.basename(os.readlink(p)) if os.path.islink(p) else None
runtimes = os.path.join(root, "runtimes")
ready = [r for r in (os.listdir(runtimes) if os.path.isdir(runtimes) else [])
         if os.path.exists(os.path.join(runtimes, r, ".complete"))]
try:
    import ensurepip, venv
    has_venv = True
except ImportError:
    has_venv = False
print(json.dumps({"root": root, "machine": platform.machine(), "python": "%d.%d" % sys.version_info[:2],
                  "venv": has_venv, "runtimes": ready, "active": link("active"), "previous": link("previous"),
                  "active_bench": os.path.exists(os.path.join(root, "active", "bench.json"))}))
"""

# Unpack a tar stream from stdin into a fresh directory under ROOT/incoming (older, abandoned copies are removed
# first); print that directory. A stream cut short raises, and the partial copy is removed.
_RECEIVE = r"""
import os, shutil, sys, tarfile, tempfile
incoming = os.path.join(sys.argv[1], "incoming")
if os.path.isdir(incoming):
    for old in os.listdir(incoming):
        shutil.rmtree(os.path.join(incoming, old), ignore_errors=True)
os.makedirs(incoming, exist_ok=True)
stage = tempfile.mkdtemp(dir=incoming)
try:
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tf:
        for m in tf:
            parts = m.name.split("/")
            if m.name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir()):
                raise SystemExit("refusing archive member " + m.name)
            tf.extract(m, stage)
except BaseException:
    shutil.rmtree(stage, ignore_errors=True)
    raise
print(stage)
"""

# Move a verified copy into bundles/BID (kept when already there), create releases/BID-RID
_PROMOTE = r"""
import os, shutil, sys
root, stage, bid, rid = sys.argv[1:5]
bundles, releases = os.path.join(root, "bundles"), os.path.join(root, "releases")
os.makedirs(bundles, exist_ok=True)
os.makedirs(releases, exist_ok=True)
if not os.path.isdir(os.path.join(bundles, bid)):
    os.rename(os.path.join(stage, "bundle"), os.path.join(bundles, bid))
release = os.path.join(releases, bid + "-" + rid)
os.makedirs(release, exist_ok=True)
for name, target in (("bundle", os.path.join("..", "..", "bundles", bid)),
                     ("runtime", os.path.join("..", "..", "runtimes", rid))):
    if not os.path.islink(os.path.join(release, name)):
        os.symlink(target, os.path.join(release, name))
shutil.rmtree(stage, ignore_errors=True)
print(release)
"""

# Point `active` at a release (the one it pointed at becomes `previous`), or swap the two with "rollback"; each
# link is replaced by renaming a new link over it, which is atomic. Appends to deploy.json.
_SWITCH = r"""
import json, os, sys, time
root, release = sys.argv[1], sys.argv[2]
def target(name):
    p = os.path.join(root, name)
    return os.readlink(p) if os.path.islink(p) else None
def point(name, to):
    tmp = os.path.join(root, "." + name + ".new")
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(to, tmp)
    os.replace(tmp, os.path.join(root, name))
active, previous = target("active"), target("previous")
if release == "rollback":
    if previous is None:
        raise SystemExit("no previous release to roll back to")
    release = previous
else:
    release = os.path.join("releases", release)
if active is not None and active != release:
    point("previous", active)
point("active", release)
log = os.path.join(root, "deploy.json")
history = json.load(open(log)) if os.path.exists(log) else []
history.append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "release": os.path.basename(release),
                "action": sys.argv[3]})
with open(log + ".tmp", "w") as f:
    json.dump(history[-50:], f, indent=1)
os.replace(log + ".tmp", log)
print(json.dumps({"active": os.path.basename(release),
                  "previous": os.path.basename(active) if active and active != release else None}))
"""

_STATUS = r"""
import json, os, subprocess, sys, time
root = os.path.abspath(os.path.expanduser(sys.argv[1]))
def release(name):
    p = os.path.join(root, name)
    if not os.path.islink(p):
        return None
    r = {"release": os.path.basename(os.readlink(p))}
    manifest = os.path.join(p, "bundle", "manifest.json")
    if os.path.exists(manifest):
        import hashlib
        r["bundle_sha256"] = hashlib.sha256(open(manifest, "rb").read()).hexdigest()
    py = os.path.join(p, "runtime", "bin", "python")
    out = subprocess.run([py, "-c", "import edgekit_runtime; print(edgekit_runtime.__version__)"],
                         capture_output=True, text=True) if os.path.exists(py) else None
    r["runtime_version"] = out.stdout.strip() if out is not None and out.returncode == 0 else None
    bench = os.path.join(p, "bench.json")
    if os.path.exists(bench):
        b = json.load(open(bench))
        r["bench"] = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(os.path.getmtime(bench))),
                      "cpu": b.get("hardware", {}).get("cpu"),
                      "models": [{"file": m["file"], "backend": m["backend"], "accuracy": m.get("accuracy"),
                                  "latency_median_ms": m["latency"]["median_ms"]} for m in b.get("models", [])]}
    return r
log = os.path.join(root, "deploy.json")
history = json.load(open(log)) if os.path.exists(log) else []
print(json.dumps({"root": root, "active": release("active"), "previous": release("previous"),
                  "last_deploy": history[-1] if history else None,
                  "service": os.path.exists(os.path.join(root, "edgekit.service"))}))
"""


# --- the machine that deploys ---

def parse_host(spec: str) -> tuple[str, int | None]:
    """`[user@]host[:port]` -> (destination, port)."""
    m = re.fullmatch(r"((?:[A-Za-z0-9._-]+@)?[A-Za-z0-9._-]+)(?::(\d{1,5}))?", spec.strip())
    if not m or m.group(1).startswith("-"):
        raise UserError(f"{spec!r}: not a host (expected [user@]host[:port])")
    return m.group(1), int(m.group(2)) if m.group(2) else None


def read_inventory(path: str) -> list[str]:
    """Hosts of an inventory file: one `[user@]host[:port]` per line; `#` starts a comment."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the inventory ({e})") from None
    hosts = [line.split("#", 1)[0].strip() for line in lines]
    for h in filter(None, hosts):
        parse_host(h)
    if not any(hosts):
        raise UserError(f"{path}: the inventory lists no host")
    return [h for h in hosts if h]


@dataclass
class Board:
    """One board reached over ssh (key authentication only: a fleet deployment must never wait for a password)."""

    host: str
    ssh_config: str | None = None
    identity: str | None = None
    python: str = "python3"
    progress: bool = False  # a line on stderr as each step starts

    def ssh(self, command: str, input_bytes: bytes | None = None) -> subprocess.CompletedProcess:
        dest, port = parse_host(self.host)
        args = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={SSH_TIMEOUT}"]
        args += ["-F", self.ssh_config] if self.ssh_config else []
        args += ["-i", self.identity] if self.identity else []
        args += ["-p", str(port)] if port else []
        return subprocess.run([*args, dest, command], input=input_bytes, capture_output=True)

    def run(self, command: str, what: str, input_bytes: bytes | None = None) -> str:
        self.say(what)
        r = self.ssh(command, input_bytes=input_bytes)
        if r.returncode != 0:
            raise UserError(f"{self.host}: {what} failed: {_last_line(r)}")
        return r.stdout.decode(errors="replace").strip()

    def say(self, what: str) -> None:
        if self.progress:
            click.echo(f"edgekit: {self.host}: {what}", err=True)

    def python_script(self, script: str, args: list[str], what: str, input_bytes: bytes | None = None) -> str:
        command = " ".join(shlex.quote(a) for a in (self.python, "-c", script, *args))
        return self.run(command, what, input_bytes)


def _last_line(r: subprocess.CompletedProcess) -> str:
    lines = (r.stderr or b"").decode(errors="replace").strip().splitlines() or \
        (r.stdout or b"").decode(errors="replace").strip().splitlines()
    if r.returncode == 255 and not lines:
        return "ssh could not connect"
    return lines[-1] if lines else f"exit status {r.returncode}"


@dataclass(frozen=True)
class Wheelhouse:
    path: Path
    manifest: dict
    rid: str

    @classmethod
    def read(cls, path: str) -> "Wheelhouse":
        p = Path(path) / WHEELHOUSE_MANIFEST
        try:
            raw = p.read_bytes()
            manifest = json.loads(raw)
            manifest["platform"], manifest["python"], manifest["wheels"]  # noqa: B018 (the keys deploy needs)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserError(f"{path}: not a wheelhouse written by `edgekit wheelhouse` ({WHEELHOUSE_MANIFEST}: "
                            f"{e})") from None
        return cls(Path(path), manifest, hashlib.sha256(raw).hexdigest()[:16])

    @property
    def extra(self) -> str:
        return "[litert]" if any("litert" in r for r in self.manifest.get("requirements", [])) else ""


def tar_stream(parts: dict[str, Path]) -> bytes:
    """An uncompressed tar of files and directories, each under its own name (models compress little, and a
    board's CPU is slow)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, path in parts.items():
            tf.add(path, arcname=name, recursive=True)
    return buf.getvalue()


def cached_wheelhouse(machine: str, python: str, litert: bool) -> Wheelhouse:
    """A wheelhouse for a board's platform and Python under ~/.cache/edgekit/wheelhouses, built on first use; its
    name holds a digest of the runtime's source, so a changed runtime gets a new one."""
    import os

    from .wheelhouse import PLATFORM_TAGS, RUNTIME_SOURCE, build_wheelhouse

    if machine not in PLATFORM_TAGS:
        raise UserError(f"the board is {machine}; edgekit-runtime has wheels for {' and '.join(PLATFORM_TAGS)} only "
                        "(on a Raspberry Pi: the 64-bit OS)")
    h = hashlib.sha256()
    for f in sorted([RUNTIME_SOURCE / "pyproject.toml", *(RUNTIME_SOURCE / "edgekit_runtime").glob("*.py")]):
        h.update(f.name.encode() + f.read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgekit" / "wheelhouses"
    path = cache / f"{machine}-py{python}{'-litert' if litert else ''}-{h.hexdigest()[:12]}"
    if not (path / WHEELHOUSE_MANIFEST).exists():
        click.echo(f"edgekit: building a wheelhouse for {machine}, Python {python} in {path}", err=True)
        build_wheelhouse(str(path), machine, python, litert, overwrite=True)
    return Wheelhouse.read(str(path))


def bundle_id(root: Path) -> str:
    """The manifest's sha256 (it holds every file's), with the signature when there is one, shortened."""
    h = hashlib.sha256((root / MANIFEST).read_bytes())
    if (root / SIGNATURE).exists():
        h.update((root / SIGNATURE).read_bytes())
    return h.hexdigest()[:16]


def deploy_board(board: Board, bundle: str, wheelhouse: Wheelhouse | None, root: str = DEFAULT_ROOT,
                 threshold: float = 1.25, force: bool = False, trust: str | None = None,
                 service: dict | None = None, send=tar_stream) -> dict:
    """Deploy `bundle` to one board; return what happened. Raises UserError (active unchanged) when a step fails."""
    local = load_bundle(bundle, trust=[])
    bid = bundle_id(local.root)
    facts = json.loads(board.python_script(_FACTS, [root], f"reaching the board with {board.python}"))
    root = facts["root"]
    if wheelhouse is not None:
        want = (wheelhouse.manifest["platform"], wheelhouse.manifest["python"])
        if want != (facts["machine"], facts["python"]):
            raise UserError(f"{board.host}: the wheelhouse is for {want[0]}, Python {want[1]}, the board is "
                            f"{facts['machine']}, Python {facts['python']} (build one with `edgekit wheelhouse "
                            f"--platform {facts['machine']} --python {facts['python']}`)")
        rid = wheelhouse.rid
    elif facts["active"] is not None and facts["active"].split("-", 1)[1] in facts["runtimes"]:
        rid = facts["active"].split("-", 1)[1]  # keep the runtime that runs now
    else:  # a new board: the wheelhouse its platform needs, built here (and kept for the next board like it)
        litert = any(m.format == "tflite" for m in local.models)
        wheelhouse = cached_wheelhouse(facts["machine"], facts["python"], litert)
        rid = wheelhouse.rid
    install = rid not in facts["runtimes"]
    if install and not facts["venv"]:
        raise UserError(f"{board.host}: {board.python} cannot create a venv (on Debian and Raspberry Pi OS: "
                        "apt install python3-venv)")
    parts = {"bundle": local.root}
    if install:
        parts["wheelhouse"] = wheelhouse.path
    if trust:
        parts["trust.pub"] = Path(trust)
    stream = send(parts)
    what = "the bundle and the runtime's wheels" if install else "the bundle"
    stage = board.python_script(_RECEIVE, [root], f"copying {what} ({len(stream) / 2**20:.1f} MiB)", stream)
    q = shlex.quote
    venv = f"{root}/runtimes/{rid}"
    try:
        if install:
            board.run(f"rm -rf {q(venv)} && {q(board.python)} -m venv {q(venv)} && {q(venv)}/bin/python -m pip "
                      f"install --quiet --no-index --find-links {q(stage)}/wheelhouse "
                      f"{q('edgekit-runtime' + wheelhouse.extra)} && touch {q(venv)}/.complete",
                      "installing the runtime from the wheelhouse")
        trust_args = f" --trust {q(stage)}/trust.pub" if trust else ""
        board.run(f"{q(venv)}/bin/edgekit verify {q(stage)}/bundle{trust_args}", "verifying the bundle on the board")
    except UserError:
        board.ssh(f"rm -rf {q(stage)}")  # best effort: the next deployment clears incoming/ anyway
        raise
    release = board.python_script(_PROMOTE, [root, stage, bid, rid], "storing the bundle")
    name = Path(release).name
    bench = f"{q(release)}/bench.json"
    compare = f" --compare {q(root)}/active/bench.json --threshold {threshold}" if facts["active_bench"] else ""
    board.say("benchmarking the bundle on the board")
    r = board.ssh(f"{q(venv)}/bin/edgekit bench {q(release)}/bundle --quick --json {bench}.new{compare}")
    regressed = r.returncode == REGRESSION_EXIT
    if r.returncode not in (0, REGRESSION_EXIT):
        raise UserError(f"{board.host}: benchmarking the bundle on the board failed: {_last_line(r)}")
    board.run(f"mv {bench}.new {bench}", "keeping the bench result")
    if regressed and not force:
        raise UserError(f"{board.host}: the new bundle runs slower than the active one ({_last_line(r)}); "
                        "kept the active bundle (--force switches anyway)")
    switched = json.loads(board.python_script(_SWITCH, [root, name, "deploy"], "switching the active bundle"))
    result = {"host": board.host, "bundle": bid, "runtime": rid, "runtime_installed": install, "release": name,
              **switched, "bench_regressed": regressed}
    if service is not None:
        result["service"] = install_service(board, root, service["source"],
                                            service.get("out") or f"{root}/predictions.jsonl")
    else:
        result["service"] = restart_service(board)
    return result


def unit_text(root: str, source: str, out: str) -> str:
    """A systemd unit that streams SOURCE through the active bundle, restarting after a failure."""
    q = shlex.quote
    return (f"[Unit]\nDescription=edgekit run: {root}/active on {source}\nAfter=local-fs.target\n\n"
            f"[Service]\nExecStart={q(root + '/active/runtime/bin/edgekit')} run {q(root + '/active/bundle')} "
            f"{q(source)} --follow --out {q(out)}\nRestart=on-failure\nRestartSec=5\n\n"
            f"[Install]\nWantedBy=default.target\n")


def _systemctl(board: Board) -> str:
    """The systemctl command for the login: the system manager for root, the user's own otherwise."""
    return "systemctl" if board.run("id -u", "asking for the user id") == "0" else "systemctl --user"


def install_service(board: Board, root: str, source: str, out: str) -> str:
    """Write edgekit.service under ROOT, link it into systemd and (re)start it; say what was done. A board without
    a running systemd still gets the unit (the switch has happened; the unit can be started by hand)."""
    unit = f"{root}/{SERVICE}"
    board.run(f"cat > {shlex.quote(unit)}.new && mv {shlex.quote(unit)}.new {shlex.quote(unit)}",
              "writing the service unit", unit_text(root, source, out).encode())
    ctl = _systemctl(board)
    r = board.ssh(f"{ctl} link {shlex.quote(unit)} && {ctl} daemon-reload && {ctl} enable {SERVICE} && "
                  f"{ctl} restart {SERVICE}")
    if r.returncode != 0:
        return f"unit written to {unit}, not started ({_last_line(r)})"
    return f"{SERVICE} restarted"


def restart_service(board: Board) -> str | None:
    """Restart edgekit.service when the board runs it, so that it picks up the new active bundle."""
    r = board.ssh(f"command -v systemctl >/dev/null && {{ systemctl is-enabled --quiet {SERVICE} 2>/dev/null || "
                  f"systemctl --user is-enabled --quiet {SERVICE} 2>/dev/null; }}")
    if r.returncode != 0:
        return None
    board.run(f"{_systemctl(board)} try-restart {SERVICE}", "restarting the service")
    return f"{SERVICE} restarted"


def rollback_board(board: Board, root: str = DEFAULT_ROOT) -> dict:
    root = json.loads(board.python_script(_FACTS, [root], f"reaching the board with {board.python}"))["root"]
    switched = json.loads(board.python_script(_SWITCH, [root, "rollback", "rollback"], "rolling back"))
    return {"host": board.host, **switched, "service": restart_service(board)}


def board_status(board: Board, root: str = DEFAULT_ROOT) -> dict:
    return {"host": board.host, **json.loads(board.python_script(_STATUS, [root], "reading the board's state"))}


def _describe(r: dict) -> str:
    if "error" in r:
        return f"{r['host']:<24} FAILED   {r['error']}"
    if "bundle" in r:
        how = "installed runtime " + r["runtime"] if r["runtime_installed"] else "runtime " + r["runtime"]
        return (f"{r['host']:<24} active   bundle {r['bundle']} ({how}; previous {r['previous'] or '-'})"
                + (f"; {r['service']}" if r.get("service") else ""))
    if "root" in r:
        a = r["active"] or {}
        models = (a.get("bench") or {}).get("models") or []
        bench = ", ".join(f"{m['file']} {m['latency_median_ms']:.3f} ms" for m in models) or "-"
        return (f"{r['host']:<24} active {a.get('release', '-')}  runtime {a.get('runtime_version') or '-'}  "
                f"bench {bench}  previous {(r['previous'] or {}).get('release', '-')}")
    return f"{r['host']:<24} active   {r['active']} (previous {r['previous'] or '-'})"


@click.command("deploy")
@click.argument("bundle", required=False)
@click.argument("hosts", nargs=-1)
@click.option("--inventory", type=click.Path(dir_okay=False, exists=True),
              help="A file of hosts, one [user@]host[:port] per line (# comments), added to HOSTS.")
@click.option("--wheelhouse", type=click.Path(file_okay=False, exists=True),
              help="The runtime to install (`edgekit wheelhouse`). Without it a board keeps the runtime it runs, "
                   "and a new board gets one built here for its platform and Python (needs the package index "
                   "here, never on the board; kept in ~/.cache/edgekit/wheelhouses).")
@click.option("--root", default=DEFAULT_ROOT, show_default=True,
              help="Directory on the board (relative to the login's home) that holds runtimes, bundles, releases.")
@click.option("--python", "board_python", default="python3", show_default=True, help="The board's Python.")
@click.option("--ssh-config", type=click.Path(dir_okay=False, exists=True), help="ssh -F: hosts, ports, keys.")
@click.option("--identity", type=click.Path(dir_okay=False, exists=True), help="ssh -i: the private key.")
@click.option("--trust", type=click.Path(dir_okay=False, exists=True),
              help="Public key the bundle must be signed with; copied along and checked on the board.")
@click.option("--threshold", default=1.25, show_default=True, type=click.FloatRange(min=1.0),
              help="Refuse the switch when the new bundle benches this many times slower than the active one.")
@click.option("--force", is_flag=True, help="Switch even when the bench regresses.")
@click.option("--service", "service_source", metavar="SOURCE",
              help="Also run `edgekit run ACTIVE SOURCE --follow` as a systemd service (edgekit.service), "
                   "restarted on failure and after every switch.")
@click.option("--service-out", help="With --service: where the service writes its predictions "
                                    "[default: ROOT/predictions.jsonl].")
@click.option("--rollback", is_flag=True, help="Make the previous release active again on HOSTS (no BUNDLE).")
@click.option("--status", is_flag=True, help="Show what runs on HOSTS: release, bundle sha256, runtime version, "
                                             "last bench (no BUNDLE).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per host.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr (the result lines stay).")
def deploy_command(bundle, hosts, inventory, wheelhouse, root, board_python, ssh_config, identity, trust, threshold,
                   force, service_source, service_out, rollback, status, as_json, quiet):
    """Deploy BUNDLE to the boards HOSTS ([user@]host[:port]) over SSH, for boards without network.

    Each board gets the bundle (and the runtime, installed with pip from copied wheels only, when it has none or
    --wheelhouse gives one), verifies it, benches it against the active bundle and then switches to it atomically;
    `--rollback` returns to the previous one, `--status` shows what runs where. A board that fails is reported and
    left as it was; the exit status is 1 when any board failed.

    \b
        edgekit deploy runs/demo/bundle/bundle pi@shop-1 pi@shop-2
        edgekit deploy --status pi@shop-1 pi@shop-2
        edgekit deploy --rollback pi@shop-2
    """
    if rollback or status:
        if rollback and status:
            raise UserError("--rollback and --status are separate actions; give one")
        hosts = ((bundle,) if bundle else ()) + hosts  # no BUNDLE: the first argument is a host
        bundle = None
    elif bundle is None:
        raise UserError("give BUNDLE and at least one host (or --rollback / --status with hosts)")
    if bundle is not None:
        load_bundle(bundle, trust=[])  # a bundle that cannot work is refused once, before any board is touched
    targets = list(hosts) + (read_inventory(inventory) if inventory else [])
    if not targets:
        raise UserError("no host given (HOSTS or --inventory)")
    for h in targets:
        parse_host(h)
    wh = Wheelhouse.read(wheelhouse) if wheelhouse else None
    if service_out and not service_source:
        raise UserError("--service-out needs --service SOURCE")
    for name, value in (("--service", service_source), ("--service-out", service_out), ("--root", root)):
        if value is not None and any(ord(c) < 32 for c in value):  # a newline would add lines to the unit
            raise UserError(f"{name}: control characters are not allowed in a path")
    failed = 0
    for host in targets:
        board = Board(host, ssh_config, identity, board_python, progress=not quiet)
        try:
            if status:
                r = board_status(board, root)
            elif rollback:
                r = rollback_board(board, root)
            else:
                service = None
                if service_source:
                    service = {"source": service_source, "out": service_out}
                r = deploy_board(board, bundle, wh, root, threshold, force, trust, service)
        except UserError as e:
            failed += 1
            r = {"host": host, "error": str(e).removeprefix(f"{host}: ")}
        click.echo(json.dumps(r) if as_json else _describe(r))
    if failed:
        raise SystemExit(1)
