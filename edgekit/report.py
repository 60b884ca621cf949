"""`edgekit report RUN_DIR`: one self-contained HTML page about a pipeline run.

Recipe, data summary, teacher and student metrics, confusion matrices on the test split, the sweep's
scaling-law fits and Pareto front (when RUN_DIR/sweep/sweep.json exists), the export verification table and the
latest bench results. Plots are matplotlib PNGs embedded as base64 and the page has no scripts and no external
resources, so it opens offline and can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import click
import numpy as np

from edgekit_runtime.errors import UserError
from edgekit_runtime.files import write_text_atomic

from .pipeline import STAGES, read_record

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.2em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}pre{background:#f7f7f7;padding:.8em;overflow:auto}
.missing{color:#a00}figure{display:inline-block;margin:0 1em 1em 0}figcaption{font-size:.9em;color:#555}"""


def _esc(v) -> str:
    if isinstance(v, float):
        return "0" if abs(v) < 1e-9 else f"{v:.4g}"
    return html.escape("" if v is None else str(v))


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_esc(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _figure(fig, caption: str) -> str:
    return (f'<figure><img alt="{_esc(caption)}" src="data:image/png;base64,{_png(fig)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _confusion_figure(y_true, y_pred, classes, title):
    import matplotlib.pyplot as plt

    k = len(classes)
    cm = np.zeros((k, k), int)
    np.add.at(cm, (y_true, y_pred), 1)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * k, 1.0 + 0.5 * k))
    ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, cm[i, j], ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return fig


def _confusions(run: Path) -> str:
    from .checkpoint import load_checkpoint
    from .data import load_spec, model_inputs, split_from_spec
    from .distill import teacher_outputs
    from .teacher.store import load_teacher
    from .training_loop import predict_logits

    parts = []
    student = load_checkpoint(run / "distill" / "student")
    ds = load_spec(student.data)
    _, _, te = split_from_spec(ds, student.data)
    teacher_dir = run / "finetune" / "teacher"
    teacher = load_teacher(teacher_dir)
    t_pred = teacher_outputs(str(teacher_dir), teacher, te)[0].argmax(1)
    parts.append(_figure(_confusion_figure(te.labels, t_pred, ds.class_names, "teacher"),
                         f"teacher on the {len(te)} test windows"))
    student_test = student.windows("test")
    s_pred = predict_logits(student.model, model_inputs(student.preprocessing, student_test)).argmax(1)
    parts.append(_figure(_confusion_figure(student_test.labels, s_pred, ds.class_names, "student"),
                         f"student on the {len(student_test)} test windows"))
    return "".join(parts)


def _scaling_figure(s: dict, split: str):
    import matplotlib.pyplot as plt

    from .scaling import power_law

    fig, ax = plt.subplots(figsize=(5, 3.6))
    pts = s["points"]
    full = max(p["fraction"] for p in pts)
    for frac in sorted({p["fraction"] for p in pts}):
        sel = [p for p in pts if p["fraction"] == frac and p[f"{split}_error"] is not None]
        ax.scatter([p["parameters"] for p in sel], [p[f"{split}_error"] for p in sel], s=14, alpha=0.7,
                   label=f"measured, fraction {frac:g}")
    f = s["fits"].get(f"{split}_params")
    if f:
        sizes = [m["size"] for m in f["measured"]]
        x = np.geomspace(min(sizes), max(sizes) * 4, 100)
        ax.plot(x, power_law(x, f["E"], f["A"], f["alpha"]), "k-",
                label=f"fit (fraction {full:g}): α={f['alpha']:.2f}, E={f['E']:.3f}")
        band = np.array(f["band"])
        ax.fill_between(band[:, 0], band[:, 1], band[:, 2], color="k", alpha=0.12,
                        label=f"{int(f['level'] * 100)}% interval (bootstrap over seeds)")
        ax.axvline(max(sizes), color="0.6", lw=0.8, ls=":")  # right of it the curve is extrapolated
    teacher = s.get("teacher")
    if teacher and teacher.get(f"{split}_error") is not None:
        ax.axhline(teacher[f"{split}_error"], color="tab:red", ls="--", label="teacher")
    ax.set_xscale("log")
    ax.set_xlabel("student parameters N")
    ax.set_ylabel(f"{split.upper()} test error")
    ax.set_title({"id": "in distribution", "ood": "out of distribution"}[split])
    ax.legend(fontsize=7)
    return fig


def _pareto_figure(s: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    pts = s["points"]
    sc = ax.scatter([p["parameters"] for p in pts], [p["accuracy"] for p in pts], c=[p["latency_ms"] for p in pts],
                    cmap="viridis", s=22)
    front = sorted((p for p in pts if p["pareto"]), key=lambda p: p["parameters"])
    ax.plot([p["parameters"] for p in front], [p["accuracy"] for p in front], "r-o", mfc="none", ms=9,
            label="Pareto front")
    fig.colorbar(sc, ax=ax, label="latency ms (ONNX Runtime, 1 window)")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlabel("parameters")
    ax.set_ylabel("ID accuracy")
    ax.legend(fontsize=7)
    return fig


def _sweep_section(run: Path) -> str:
    path = run / "sweep" / "sweep.json"
    if not path.is_file():
        return ('<p class="missing">No sweep in this run: add a [sweep] table to the recipe (or run <code>edgekit '
                f'sweep --teacher {_esc(run / "finetune" / "teacher")} --out {_esc(run / "sweep")}</code>).</p>')
    s = json.loads(path.read_text())
    figs = _figure(_scaling_figure(s, "id"), "in-distribution error against parameters")
    figs += _figure(_scaling_figure(s, "ood"), "out-of-distribution error against parameters")
    figs += _figure(_pareto_figure(s), "every trained student: parameters, latency, accuracy")
    fit_rows = []
    for key, f in s["fits"].items():
        split, x = key.split("_")
        row = {"split": split.upper(), "X": {"params": "parameters N", "data": "training windows D"}[x]}
        if f:
            row.update(alpha=f["alpha"], alpha_interval=f"[{f['alpha_interval'][0]:.3f}, {f['alpha_interval'][1]:.3f}]",
                       E=f["E"], E_interval=f"[{f['E_interval'][0]:.3f}, {f['E_interval'][1]:.3f}]")
        else:
            row["alpha"] = "not fitted"
        fit_rows.append(row)
    rec = s.get("recommendation")
    rec_html = "<p>No recommendation (no fit, or no size meets the target).</p>"
    if rec:
        pen = rec["predicted_ood_penalty"]
        rec_html = (f"<p><b>Recommended student: {rec['parameters']:,} parameters</b>: predicted ID error "
                    f"{rec['predicted_id_error']:.3f} within {rec['target']:g} of the {_esc(rec['reference'])} "
                    f"({rec['reference_error']:.3f}); predicted OOD penalty "
                    f"{'-' if pen is None else format(pen, '+.3f')}.</p>")
    grouped = "grouped (whole groups held out)" if s["ood_is_grouped"] else "random: not out of distribution"
    return (f"<p>{s['windows']['train']} training, {s['windows']['id_test']} in-distribution and "
            f"{s['windows']['ood_test']} out-of-distribution test windows; test split {grouped}.</p>"
            + figs + _table(fit_rows, ["split", "X", "alpha", "alpha_interval", "E", "E_interval"]) + rec_html
            + "<details><summary>all trained students</summary>"
            + _table(s["points"], ["id", "parameters", "latency_ms", "fraction", "train_windows", "seed", "id_error",
                                   "ood_error", "pareto"]) + "</details>")


def build_report(run_dir: str | Path) -> str:
    run = Path(run_dir)
    if not (run / "recipe.toml").is_file():
        raise UserError(f"{run}: not a pipeline run directory (no recipe.toml); give the --out of edgekit pipeline")
    import matplotlib

    matplotlib.use("Agg")
    rec = {s: read_record(run / s) for s in STAGES}
    recipe = json.loads((run / "recipe.json").read_text())
    parts = [f"<h1>edgekit run: {_esc(recipe['name'])}</h1>",
             "<h2>Stages</h2>" + _table([{"stage": s, "hash": (r or {}).get("key", "not run"),
                                          "seconds": (r or {}).get("seconds"), "finished": (r or {}).get("finished")}
                                         for s, r in rec.items()], ["stage", "hash", "seconds", "finished"]),
             f"<h2>Recipe</h2><pre>{_esc((run / 'recipe.toml').read_text())}</pre>"]

    from .data import load_spec

    data = recipe["data"]
    summary = load_spec({k: data.get(k) for k in ("dataset", "window", "stride", "time_column", "label_column",
                                                  "channels", "uncertainty_suffix")}).summary()
    parts.append("<h2>Data</h2>" + _table([{"item": k, "value": v if not isinstance(v, (list, dict)) else
                                            json.dumps(v)} for k, v in summary.items()], ["item", "value"]))

    parts.append("<h2>Teacher and student</h2>")
    if rec["finetune"] and rec["distill"]:
        t, d = rec["finetune"]["result"]["summary"], rec["distill"]["result"]["summary"]
        w = d["windows"]
        parts.append(f"<p>Split: {_esc(data.get('split') or 'the benchmark default')}; {w['train_labelled']} labelled "
                     f"and {w['train_unlabelled']} unlabelled training windows, {w['val']} validation, "
                     f"{w['test']} test.</p>")
        st = d["student"]
        rows = [{"model": "teacher", "parameters": t["parameters"], "MACs": d["teacher"]["macs"],
                 "val accuracy": d["teacher"].get("val_accuracy"), "test accuracy": t["test_accuracy"],
                 "test macro-F1": t["test_macro_f1"]}]
        member = d.get("minirocket") or {}
        if member.get("weight"):  # the distillation target: the teacher mixed with MiniRocket
            rows.append({"model": f"teacher + MiniRocket ({member['weight']:g})", "parameters": t["parameters"],
                         "MACs": d["teacher"]["macs"], "val accuracy": member["target_val_accuracy"],
                         "test accuracy": member["target_test_accuracy"],
                         "test macro-F1": member["target_test_macro_f1"]})
        for kind in ("alone", "distilled"):
            if kind in d:
                rows.append({"model": f"student {kind}", "parameters": st["parameters"], "MACs": st["macs"],
                             "val accuracy": d[kind]["val_accuracy"], "test accuracy": d[kind]["test_accuracy"],
                             "test macro-F1": d[kind]["test_macro_f1"]})
        rows.append({"model": f"student kept ({d.get('kept', 'distilled')})", "parameters": st["parameters"],
                     "MACs": st["macs"], "val accuracy": None, "test accuracy": st["test_accuracy"],
                     "test macro-F1": st["test_macro_f1"]})
        parts.append(_table(rows, ["model", "parameters", "MACs", "val accuracy", "test accuracy", "test macro-F1"]))
        if "gain" in d:
            why = ("the better of the two on the validation windows" + (", refitted on training + validation "
                                                                          "windows" if d.get("refit") else "")
                   if w["val"] else "the distilled one (no validation windows to choose by)")
            parts.append(f"<p>Distillation gain on the test windows: {d['gain']:+.3f}. The student kept is {why}.</p>")
        if d.get("note"):
            parts.append(f'<p class="missing">Note: {_esc(d["note"])}.</p>')
        parts.append("<h3>Confusion matrices</h3>" + _confusions(run))
    else:
        parts.append('<p class="missing">The finetune and distill stages have not run.</p>')

    parts.append("<h2>Scaling laws and student size</h2>" + _sweep_section(run))

    parts.append("<h2>Export verification</h2>")
    if rec["export"]:
        rows = [{"model": name, "file": m["file"], "KiB": m["bytes"] / 1024, **{k: m["verification"].get(k) for k in
                 ("windows", "max_abs_diff", "argmax_agreement", "accuracy_torch", "accuracy_exported",
                  "accuracy_delta")}} for name, m in rec["export"]["result"]["models"].items()]
        parts.append(_table(rows, ["model", "file", "KiB", "windows", "max_abs_diff", "argmax_agreement",
                                   "accuracy_torch", "accuracy_exported", "accuracy_delta"]))
    else:
        parts.append('<p class="missing">The export stage has not run.</p>')

    parts.append("<h2>Bench</h2>")
    bench = run / "bench" / "bench.json"
    if bench.is_file():
        b = json.loads(bench.read_text())
        h = b["hardware"]
        parts.append(f"<p>{_esc(h['cpu'])}, {h['cores']} cores, {_esc(h['arch'])}; {b['threads']} thread(s), "
                     f"{b['windows']} windows; finished {_esc(rec['bench']['finished'])}.</p>")
        rows = [{"model": m["file"], "backend": m["backend"], "KiB": m["bytes"] / 1024,
                 "median ms": m["latency"]["median_ms"], "p99 ms": m["latency"]["p99_ms"],
                 "windows/s (batch 1)": m["windows_per_second"]["batch_1"], "accuracy": m.get("accuracy")}
                for m in b.get("models", [])]
        parts.append(_table(rows, ["model", "backend", "KiB", "median ms", "p99 ms", "windows/s (batch 1)",
                                   "accuracy"]))
        if "cold_start" in b:
            parts.append(f"<p>Cold start to first prediction: {b['cold_start']['cached_s']:.2f} s with the numba "
                         f"cache, {b['cold_start']['no_cache_s']:.2f} s without.</p>")
    else:
        parts.append('<p class="missing">The bench stage has not run.</p>')

    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>edgekit: {_esc(recipe["name"])}'
            f"</title><style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), help="HTML file to write [default: RUN_DIR/report.html].")
def report_command(run_dir, out):
    """Write one self-contained HTML report of a pipeline run (RUN_DIR of edgekit pipeline): recipe, data, teacher
    and student metrics, confusion matrices, scaling-law fits and Pareto front (RUN_DIR/sweep), export
    verification and the latest bench. It opens offline in any browser."""
    page = build_report(run_dir)
    out = out or str(Path(run_dir) / "report.html")
    write_text_atomic(out, page)
    click.echo(f"wrote {out} ({len(page) / 1024:.0f} KiB, {page.count('<img')} plots)")
