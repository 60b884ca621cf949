"""The `edgekit` command. Board-side commands live here; the compile side adds its own commands through the
`edgekit.commands` entry-point group, so one `edgekit --help` lists everything that is installed."""

from __future__ import annotations

import json
import signal
import sys
import threading
from importlib.metadata import entry_points

import click

from . import __version__
from .errors import UserError

PLUGIN_GROUP = "edgekit.commands"
MAX_THREADS = 256  # more threads than any board has cores only costs memory (100000 took 16 GB)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an interrupt so that the cleanup Ctrl-C runs (temporary files, staging directories)
    runs for it too."""


def _terminate(signum, frame):
    raise Terminated()


def _interrupt_behind(e: BaseException | None) -> KeyboardInterrupt | None:
    """The interrupt in `e`'s chain of causes, if any: an interrupt that lands inside a library's lazy import
    (torch's exporter) comes back as that library's own error."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


class EdgekitGroup(click.Group):
    """Loads plugin commands lazily and turns UserError into a one-line message and exit code 1."""

    def _plugins(self) -> dict[str, click.Command]:
        if not hasattr(self, "_plugin_cache"):
            found = {}
            for ep in entry_points(group=PLUGIN_GROUP):
                try:
                    found[ep.name] = ep.load()
                except Exception as e:  # a broken compile-side install must not take the board commands down
                    click.echo(f"edgekit: warning: command {ep.name!r} unavailable ({type(e).__name__}: {e})", err=True)
            self._plugin_cache = found
        return self._plugin_cache

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx, name):
        return super().get_command(ctx, name) or self._plugins().get(name)

    def invoke(self, ctx):
        main_thread = threading.current_thread() is threading.main_thread()  # only it may set signal handlers
        previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
        try:
            return super().invoke(ctx)
        except (Exception, KeyboardInterrupt) as e:
            cause = _interrupt_behind(e) or e
            if isinstance(cause, Terminated):
                click.echo("edgekit: terminated", err=True)
                ctx.exit(143)
            if isinstance(cause, KeyboardInterrupt):
                click.echo("edgekit: interrupted", err=True)
                ctx.exit(130)
            if isinstance(e, UserError):
                click.echo(f"edgekit: error: {e}", err=True)
                ctx.exit(1)
            raise
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)


@click.group(cls=EdgekitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekit")
def main():
    """edgekit: compile time-series models for small boards, and run them there.

    Board-side commands (run, bench, info) need only the edgekit-runtime package. Compile-side commands
    (data, train, export, ...) appear here when the edgekit package is installed.
    """


BUNDLE = click.argument("bundle", type=click.Path())
TRUST = click.option(
    "--trust", multiple=True, type=click.Path(exists=True), metavar="PUBKEY",
    help="Only accept a bundle signed by this key (a .pub file from `edgekit keygen`, or a directory of them; "
         "repeatable). Keys in $EDGEKIT_TRUST_DIR (default /etc/edgekit/trust) are always trusted: with any "
         "trusted key, unsigned bundles and bundles signed by other keys are refused.")


def trust_keys(paths) -> list[bytes] | None:
    from .signing import trusted_keys

    return trusted_keys(paths)


def backend_options(f):
    """Which of a bundle's models runs, and with how many threads."""
    from .engine import BACKENDS, PRECISIONS

    f = click.option("--threads", default=1, show_default=True, type=click.IntRange(1, MAX_THREADS),
                     help="Inference threads.")(f)
    f = click.option("--precision", type=click.Choice(PRECISIONS),
                     help="Run the bundle's model of this precision [default: the first one that runs here].")(f)
    f = click.option("--backend", type=click.Choice(sorted(b.name for b in BACKENDS)),
                     help="Inference backend [default: chosen from the bundle and what is installed].")(f)
    return f


@main.command()
@BUNDLE
@click.argument("input_path", metavar="INPUT", type=click.Path(allow_dash=True))
@click.option("--out", type=click.Path(dir_okay=False),
              help="Write JSON lines here instead of stdout: atomically (complete or absent), or for stdin and "
                   "--follow line by line. Through a symlink, the file it points to is written; a character device "
                   "or FIFO is written directly; a block device or socket is refused.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "parquet"]),
              help="Input format [default: from the file suffix, else detected from the first line].")
@click.option("--follow", is_flag=True, help="Keep reading INPUT as it grows (like tail -f).")
@click.option("--idle-timeout", type=click.FloatRange(min=0),
              help="With --follow: stop after this many seconds without new data.")
@click.option("--only-changes", is_flag=True, help="Write a record only when the predicted class changes.")
@click.option("--stride", type=click.IntRange(min=1),
              help="Samples between window starts (default: the model's stride).")
@click.option("--batch", default=32, show_default=True, type=click.IntRange(min=1), help="Windows per model call.")
@backend_options
@TRUST
@click.option("--strict", is_flag=True, help="Stop at the first bad row instead of skipping it.")
@click.option("--label-column", help="A column of true labels: each record gets the window's majority label and "
                                     "the summary on stderr reports accuracy.")
def run(bundle, input_path, out, fmt, follow, idle_timeout, only_changes, stride, batch, backend, precision, threads,
        trust, strict, label_column):
    """Classify every window of INPUT with the model in BUNDLE (a directory or .tar.gz).

    INPUT is a CSV, JSON-lines or Parquet file (Parquet needs pyarrow), a directory of them, or - for stdin.
    CSV has a header row naming the columns: the model's channel columns (any order, extra columns ignored) and
    optionally a `time` column (seconds or ISO-8601); JSON lines and Parquet have the same keys/columns. Writes one
    JSON line per window: {"source", "window_end", "class", "probabilities", "latency_ms"}. Bad rows are reported on
    stderr with their line number and skipped; a window never spans a bad row. A row is bad when a value is not a
    number (JSON true/false included), NaN, infinite or beyond ±1e15, or its time is beyond year 9999 or goes
    backwards.

    Text is UTF-8 (a leading byte-order mark is dropped); lines end at LF or CRLF and hold at most 1 MiB
    (1048576 characters): a longer line stops the run with an error. The first JSON object must hold every
    channel, as a CSV header must name every channel column. With --follow, a line is read only once its line
    end arrives, and a file that shrinks (copytruncate log rotation) is read again from its start.
    A run that stops with an error leaves no --out file and exits non-zero.
    """
    from .runner import Runner

    runner = Runner(bundle, threads=threads, stride=stride, batch=batch, backend=backend, precision=precision,
                    trust=trust_keys(trust))
    runner.run_path(input_path, out=out, fmt=fmt, follow=follow, idle_timeout=idle_timeout, strict=strict,
                    label_column=label_column, only_changes=only_changes)


@main.command()
@BUNDLE
@TRUST
def verify(bundle, trust):
    """Check BUNDLE without running it: the signature (when keys are trusted or the bundle is signed), every file
    against its sha256 and none unlisted, manifest and preprocessing against their schema, each model loaded
    with its input and output shapes checked, readable evaluation windows, and (for a .tar.gz) a safe archive."""
    from .engine import backend_for, backend_names, check_model, open_model
    from .model_dir import load_bundle

    b = load_bundle(bundle, trust=trust_keys(trust))
    evals = b.eval_set()
    for name in b.manifest["files"]:
        click.echo(f"ok  {name}")
    for m in b.models:
        if backend_for(m.format) is not None:
            check_model(open_model(m), len(b.preprocessing.channels), b.preprocessing.window, len(b.classes),
                        f"{bundle}: {m.name}")
            checked = "loaded, shapes match"
        else:
            checked = f"not loaded ({backend_names(m.format)} not installed)"
        click.echo(f"model  {m.name}: {m.format} {m.precision}, {checked}")
    if evals is not None:
        click.echo(f"eval   {len(evals[1])} windows")
    click.echo(f"signed by {b.signer}" if b.signer else "unsigned")
    click.echo(f"{bundle}: verified ({len(b.manifest['files'])} files)")


REGRESSION_EXIT = 3


@main.command()
@BUNDLE
@click.option("--windows", "n_windows", default=500, show_default=True, type=click.IntRange(min=1),
              help="Timed windows per measurement.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, MAX_THREADS),
              help="Inference threads.")
@click.option("--quick", is_flag=True, help="Fewer repetitions and batch sizes: a rough answer in seconds.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the results as JSON here.")
@click.option("--compare", "compare_to", type=click.Path(dir_okay=False, exists=True),
              help="An earlier --json result: show new/old ratios, and exit with status 3 on a regression.")
@click.option("--threshold", default=1.25, show_default=True,
              help="With --compare: a time this many times the old one (or a throughput this many times lower) "
                   "is a regression; so is an accuracy drop over 0.005.")
@TRUST
def bench(bundle, n_windows, threads, quick, json_out, compare_to, threshold, trust):
    """Measure BUNDLE on this machine: cold start, preprocessing (numba vs numpy), latency and throughput of every
    model that runs here, peak RSS, file sizes, accuracy on the embedded evaluation windows, hardware."""
    import math

    from .bench import compare, flat_metrics, format_table, run_bench
    from .model_dir import read_json

    # nan would never flag a regression and a threshold <= 0 always would (FloatRange lets nan through)
    if not (math.isfinite(threshold) and threshold > 0):
        raise UserError(f"--threshold: expected a finite number above 0, got {threshold}")
    old = read_json(compare_to) if compare_to else None
    if old is not None:
        flat_metrics(old, compare_to)  # refuse a baseline that is not a bench result before the minutes of measuring
    result = run_bench(bundle, n_windows=n_windows, threads=threads, quick=quick, progress=True, trust_paths=trust)
    rows, regressions = compare(result, old, threshold, compare_to) if old is not None else (None, [])
    if old is not None:
        result["comparison"] = {"against": compare_to, "threshold": threshold, "rows": rows,
                                "regressions": regressions}
    click.echo(format_table(result, rows))
    if json_out:
        from .files import write_text_atomic

        write_text_atomic(json_out, json.dumps(result, indent=2) + "\n")
    if regressions:
        click.echo(f"edgekit: regression against {compare_to}: {', '.join(regressions)}", err=True)
        sys.exit(REGRESSION_EXIT)


@main.command()
@BUNDLE
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@TRUST
def info(bundle, as_json, trust):
    """Show what a bundle holds: models with their inputs/outputs, preprocessing, classes, verification metrics,
    and who signed it (the fingerprint of the signing key)."""
    from .describe import describe, format_description

    d = describe(bundle, trust=trust_keys(trust))
    click.echo(json.dumps(d, indent=2) if as_json else format_description(d))


@main.command()
@click.argument("key", type=click.Path(dir_okay=False))
def keygen(key):
    """Create an Ed25519 key pair for signing bundles: KEY (private, mode 0600; keep it off the boards) and
    KEY.pub (public; copy it to each board's trust directory, $EDGEKIT_TRUST_DIR or /etc/edgekit/trust).

    Sign with `edgekit bundle ... --sign KEY`; check with `edgekit verify BUNDLE --trust KEY.pub`."""
    from .signing import fingerprint, generate_key, read_public_key

    private, public = generate_key(key)
    click.echo(f"wrote {private} (private, keep secret) and {public} (public)")
    click.echo(f"key fingerprint {fingerprint(read_public_key(public))}")


if __name__ == "__main__":
    sys.exit(main())
