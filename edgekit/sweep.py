"""`edgekit sweep`: students over a grid of parameter budgets × data fractions × seeds, scaling-law fits, and
the smallest student that meets an accuracy target.

Evaluation protocol. The data split (the teacher's recorded one, or the one given) yields train / val / test.
Students train for a fixed number of epochs, without early stopping, so the val windows stay unseen and serve as
the in-distribution (ID) test set; the test split is the out-of-distribution (OOD) set when it is a grouped split
(whole groups held out). With a teacher, every student is distilled from the teacher's outputs on the training
windows, computed once and cached on disk (`distill.teacher_outputs`), mixed with MiniRocket's as `edgekit distill`
mixes them (teacher/minirocket.py; its weight, one of five, chosen on the val windows); a data fraction
keeps a stratified share of the labelled training windows. Each grid point writes its checkpoint and result under
OUT/points/, so an interrupted sweep continues where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from multiprocessing import get_context
from pathlib import Path

import click
import numpy as np
from click.core import ParameterSource

from edgekit_runtime.errors import UserError
from edgekit_runtime.files import atomic_write, check_writable, write_text_atomic
from edgekit_runtime.model_dir import read_json

from .settings import DataSettings, SignalSettings, from_options, options, setting
from .train_settings import TrainSettings

RESULT = "result.json"
INPUTS = "inputs.json"  # what the finished students of a sweep directory were trained from


@dataclass(frozen=True)
class SweepSettings:
    epochs: int | None = setting(None, "Fixed training epochs per student [default: the training recipe's step "
                                       "budget, as edgekit train uses].", minimum=1)
    lr: float = setting(TrainSettings.lr, "Peak learning rate.")
    batch_size: int = setting(TrainSettings.batch_size, "Windows per batch.", minimum=2)
    target: float = setting(0.02, "Recommend the smallest student whose predicted ID error is within this of the "
                                  "teacher's (without a teacher: of the fitted asymptote E).")

    def __post_init__(self):
        if not (math.isfinite(self.lr) and self.lr > 0 and math.isfinite(self.target) and 0 <= self.target <= 1):
            raise UserError(f"--lr must be positive and --target an error margin from 0 to 1 (got {self.lr}, "
                            f"{self.target})")


def _stratified_fraction(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a per-class `fraction` of the windows (at least one per class), the same for the same seed."""
    rng = np.random.default_rng([seed, int(fraction * 1e6)])
    picked = [rng.permutation(np.flatnonzero(labels == k))[:max(1, math.ceil(fraction * np.sum(labels == k)))]
              for k in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def _splits(spec: dict):
    from .data import load_spec, split_from_spec

    ds = load_spec(spec)
    return ds, *split_from_spec(ds, spec)


def _error(model, x, y) -> float | None:
    from .training_loop import predict_logits

    return None if len(y) == 0 else float((predict_logits(model, x).argmax(1) != y).mean())


def train_point(job: dict) -> dict:
    """Train one grid point (run in a worker process); writes its checkpoint and result under job['out']."""
    import torch
    from torch import nn

    from .checkpoint import Checkpoint, save_checkpoint
    from .data import model_inputs
    from .distill import distillation_batches, standardised
    from .filters import signal_steps
    from .settings import DistillSettings
    from .models import MSACNN, count_macs, count_parameters
    from .normalization import fit_preprocessing
    from .train import student_config
    from .training_loop import fit, train_classifier

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    t0 = time.perf_counter()
    ds, tr, va, te = _splits(job["spec"])
    keep = _stratified_fraction(tr.labels, job["fraction"], job["seed"])
    tr_part = tr.subset(keep)
    if job["teacher"]:
        from .teacher.store import load_teacher

        pre = load_teacher(job["teacher"]).preprocessing
    else:
        pre = fit_preprocessing(tr_part, "auto", job["spec"].get("stride") or ds.length,
                                signal_steps(job["signal"], ds.sampling_rate))
    x_train, x_val, x_test = (model_inputs(pre, s) for s in (tr_part, va, te))
    torch.manual_seed(job["seed"])
    cfg = student_config(ds, job["params"])
    model = MSACNN(cfg)
    s = SweepSettings(**job["settings"])
    settings = TrainSettings(epochs=s.epochs, lr=s.lr, batch_size=s.batch_size, seed=job["seed"])
    empty = np.empty(0, np.int64)
    if job["teacher"]:
        d = DistillSettings(**job["distill"])
        t_logits = torch.from_numpy(np.load(job["teacher_outputs"])["logits"][keep])
        t_emb = standardised(np.load(job["teacher_outputs"])["embeddings"][keep])
        project = nn.Linear(cfg.embed, t_emb.shape[1])
        batch_loss = distillation_batches(model, project, x_train, tr_part.labels, t_logits, t_emb, d, settings)
        fit(model, len(tr_part), batch_loss, None, settings, extra_parameters=list(project.parameters()),
            progress=False)
    else:
        train_classifier(model, x_train, tr_part.labels, x_train[:0], empty, settings, progress=False)
    result = {"id": job["id"], "params_budget": job["params"], "fraction": job["fraction"], "seed": job["seed"],
              "parameters": count_parameters(model), "macs": count_macs(model), "width": cfg.width,
              "train_windows": len(tr_part), "id_error": _error(model, x_val, va.labels),
              "ood_error": _error(model, x_test, te.labels), "seconds": round(time.perf_counter() - t0, 2)}
    out = Path(job["out"])
    # no held-out windows: a sweep writes dozens of checkpoints, and exporting one of them reloads the data
    save_checkpoint(out / "checkpoint", Checkpoint(model, pre, ds.class_names, job["spec"], {"sweep": result}),
                    overwrite=True)
    write_text_atomic(out / RESULT, json.dumps(result, indent=2) + "\n")  # written last: marks the point done
    return result


def _point_line(r: dict) -> str:
    ood = "-" if r["ood_error"] is None else f"{r['ood_error']:.3f}"
    return f"  {r['id']:<18}{r['parameters']:>8,} params  ID error {r['id_error']:.3f}  OOD error {ood}"


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs the optional dependency ray (pip install 'edgekit[ray]')") from None
    return ray


def _run_jobs(jobs: list[dict], n_jobs: int, ray_address: str | None, echo) -> list[dict]:
    if ray_address:
        ray = _ray()
        ray.init(address=ray_address, ignore_reinit_error=True, log_to_driver=False)
        remote = ray.remote(num_cpus=1)(train_point)
        return ray.get([remote.remote(j) for j in jobs])
    if n_jobs <= 1:
        out = []
        for j in jobs:
            out.append(train_point(j))
            echo(_point_line(out[-1]))
        return out
    out = []
    # spawn: a forked torch process can deadlock in its thread pools
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=get_context("spawn")) as pool:
        for r in pool.map(train_point, jobs):
            out.append(r)
            echo(_point_line(r))
    return out


def _latency_ms(checkpoint: Path, work: Path) -> float:
    """Median single-window latency of the student exported to ONNX, in ONNX Runtime on one thread."""
    import onnxruntime as ort

    from .export import export_checkpoint

    m = export_checkpoint(str(checkpoint), str(work), overwrite=True)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(work / m["model"]["file"]), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal([1, *inp.shape[1:]]).astype(np.float32)
    for _ in range(20):
        sess.run(None, {inp.name: x})
    times = []
    for _ in range(200):
        t = time.perf_counter()
        sess.run(None, {inp.name: x})
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def _candidates(ds, lo: int, hi: int) -> list[int]:
    """Parameter counts of every student width from the smallest tried size up to 4x the largest (beyond the
    largest tried the prediction is an extrapolation)."""
    from .models import MSACNN, count_parameters
    from .train import student_config

    sizes = []
    for width in range(1, 257):
        n = count_parameters(MSACNN(student_config(ds, width=width)))
        if n > 4 * hi:
            break
        if n >= lo:
            sizes.append(n)
    return sizes


def analyse(results: list[dict], ds, teacher: dict | None, settings: SweepSettings, ood_is_grouped: bool) -> dict:
    from .scaling import fit, predict

    full = [r for r in results if r["fraction"] == max(x["fraction"] for x in results)]
    sizes = sorted({r["parameters"] for r in full})
    cands = _candidates(ds, sizes[0], sizes[-1]) if sizes else []
    untried = [c for c in cands if c not in sizes]
    fits = {}
    for split in ("id", "ood"):
        pts = [(r["parameters"], r[f"{split}_error"], r["seed"]) for r in full if r[f"{split}_error"] is not None]
        fits[f"{split}_params"] = fit(pts, predict_at=untried)
        largest = [r for r in results if r["parameters"] == sizes[-1]] if sizes else []
        pts = [(r["train_windows"], r[f"{split}_error"], r["seed"]) for r in largest if r[f"{split}_error"] is not None]
        fits[f"{split}_data"] = fit(pts)
    rec = None
    f_id, f_ood = fits["id_params"], fits["ood_params"]
    if f_id is not None:
        reference = teacher["id_error"] if teacher else f_id["E"]
        ok = [c for c in cands if predict(f_id, c) <= reference + settings.target]
        if ok:
            n = ok[0]
            pred_id = predict(f_id, n)
            pred_ood = predict(f_ood, n) if f_ood else None
            rec = {"parameters": n, "predicted_id_error": pred_id,
                   "predicted_ood_error": pred_ood,
                   "predicted_ood_penalty": None if pred_ood is None else pred_ood - pred_id,
                   "reference": "teacher ID error" if teacher else "fitted asymptote E",
                   "reference_error": reference, "target": settings.target, "extrapolated": n > sizes[-1]}
    return {"fits": fits, "recommendation": rec, "ood_is_grouped": ood_is_grouped}


def _finished(path: Path) -> dict | None:
    """A grid point's result, or None when it is not done: missing, or damaged (a disk filled up, a hand edit),
    in which case the point is trained again."""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict):
        return None
    numbers = [result.get(k) for k in ("parameters", "macs", "width", "fraction", "seed", "id_error")]
    ood = result.get("ood_error")
    ok = all(isinstance(v, (int, float)) for v in numbers) and (ood is None or isinstance(ood, (int, float)))
    return result if ok and isinstance(result.get("id"), str) else None


def _read_latency(path: Path) -> dict[int, float]:
    """Latency per parameter count measured by an earlier run; a damaged file is measured again."""
    try:
        return {int(k): float(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _claim(out: Path, inputs: dict) -> None:
    """Record what the students in `out` are trained from. A directory holding finished students of other data,
    split, signal steps, settings or teacher is refused rather than resumed: its students would be reported as
    this sweep's. (The grid may differ: more sizes or seeds add points.)"""
    check_writable(out)
    if (out / "points").exists() and not (out / "points").is_dir():
        raise UserError(f"{out / 'points'}: not a directory; remove it or give another --out")
    inputs = json.loads(json.dumps(inputs))  # as read back: lists, not tuples
    if any((out / "points").glob(f"*/{RESULT}")):
        if not (out / INPUTS).is_file():
            raise UserError(f"{out}: holds students without a record of what they were trained from ({INPUTS}); "
                            "remove it or give another --out")
        held = read_json(out / INPUTS)
        differ = [k for k in inputs if held.get(k) != inputs[k]]
        if differ:
            raise UserError(f"{out}: holds a sweep of other {', '.join(differ)}; remove it or give another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / INPUTS, json.dumps(inputs, indent=2) + "\n")


def run_sweep(out: str, spec: dict | None, teacher_dir: str | None, budgets: list[str], fractions: list[float],
              seeds: int, settings: SweepSettings = SweepSettings(), distill_settings=None, jobs: int = 1,
              ray_address: str | None = None, echo=print, signal=None) -> dict:
    """Train the grid (skipping points already done in `out`), fit, recommend; write OUT/sweep.json and sweep.md.
    `signal` (SignalSettings, students on labels only): filter/detrend/resampling steps, as `edgekit train` takes
    them; students distilled from a teacher take the teacher's."""
    from .data import source_digest
    from .distill import minirocket_target, teacher_outputs
    from .settings import DistillSettings
    from .teacher.minirocket import mixed_logits

    out = Path(out)
    if ray_address:
        _ray()  # before any work
    for f in fractions:
        if not 0 < f <= 1:
            raise UserError(f"data fractions must be in (0, 1], got {f}")
    if seeds < 1:
        raise UserError("--seeds must be at least 1")
    if not budgets:
        raise UserError("--params names no parameter budget; give e.g. 1k,3k,10k")
    teacher, outputs_path = None, None
    distill_settings = distill_settings or DistillSettings()
    if teacher_dir:
        from .teacher.store import load_teacher
        from .training_loop import classification_metrics

        t = load_teacher(teacher_dir)
        if not t.classes or "split" not in t.data:
            raise UserError(f"{teacher_dir}: not a fine-tuned teacher (fine-tune it with edgekit finetune)")
        spec = t.data
        ds, tr, va, te = _splits(spec)
        logits, emb = teacher_outputs(teacher_dir, t, tr)  # cached next to the teacher: computed once
        val_logits = teacher_outputs(teacher_dir, t, va)[0] if len(va) else None
        member_weight = 0.0
        if distill_settings.minirocket and len(va):  # the target edgekit distill teaches: teacher + MiniRocket
            member = minirocket_target(tr, np.arange(len(tr)), [], va, te, len(ds.class_names), val_logits,
                                       TrainSettings().seed)
            if member["weight"]:
                member_weight = member["weight"]
                logits = mixed_logits(logits, member["probabilities"][0], member_weight)
        outputs_path = out / "teacher-outputs.npz"
        with atomic_write(outputs_path, binary=True) as f:  # one file every worker reads
            np.savez(f, logits=logits, embeddings=emb)
        teacher = {"dir": str(teacher_dir), "parameters": sum(p.numel() for p in t.model.parameters()),
                   "minirocket_weight": member_weight,
                   "id_error": 1 - classification_metrics(va.labels, val_logits)["accuracy"] if len(va) else None,
                   "ood_error": 1 - classification_metrics(te.labels,
                                                           teacher_outputs(teacher_dir, t, te)[0])["accuracy"]}
    else:
        from .filters import with_signal

        ds, tr, va, te = _splits(spec)
        filtered, _ = with_signal(spec, ds.sampling_rate, signal)
        if filtered is not spec:
            spec = filtered
            ds, tr, va, te = _splits(spec)
    if len(va) == 0:
        raise UserError("the split has no validation windows to measure in-distribution error on; give --val > 0")
    from .train import student_config

    widths = {}
    for b in budgets:  # every budget must build before any work starts; budgets giving the same student run once
        w = student_config(ds, b).width
        if w in widths.values():
            echo(f"sweep     budget {b} gives the same student as {[k for k, v in widths.items() if v == w][0]}; "
                 "skipped")
            continue
        widths[b] = w
    budgets = list(widths)
    job_signal = asdict(signal) if signal and not teacher_dir else {}
    teacher_inputs = None if not teacher_dir else {
        "weights_sha256": read_json(Path(teacher_dir) / "teacher.json")["weights_sha256"],
        "distill": asdict(distill_settings)}
    _claim(out, {"data": spec, "data files": source_digest(spec["dataset"]), "signal steps": job_signal,
                 "settings": asdict(settings), "teacher": teacher_inputs})
    threads = 1 if (jobs > 1 or ray_address) else 0
    grid = [{"id": f"p{b}-f{f:g}-s{s}", "params": b, "fraction": f, "seed": s} for b in budgets for f in fractions
            for s in range(seeds)]
    results, todo = [], []
    for g in grid:
        done = _finished(out / "points" / g["id"] / RESULT)
        if done is not None:
            results.append(done)
        else:
            todo.append({**g, "spec": spec, "signal": job_signal, "teacher": teacher_dir,
                         "teacher_outputs": str(outputs_path or ""),
                         "settings": asdict(settings), "distill": asdict(distill_settings), "threads": threads,
                         "out": str(out / "points" / g["id"])})
    echo(f"sweep     {len(grid)} students ({len(results)} already done), {ds.name}: {len(tr)} train, "
         f"{len(va)} ID-test, {len(te)} OOD-test windows"
         f"{', distilled from ' + str(teacher_dir) if teacher_dir else ''}")
    results += _run_jobs(todo, jobs, ray_address, echo)
    results.sort(key=lambda r: (r["parameters"], r["fraction"], r["seed"]))

    known = out / "latency.json"
    latency = _read_latency(known)
    for r in results:  # latency depends on the architecture only: measure each size once
        if r["parameters"] not in latency:
            latency[r["parameters"]] = _latency_ms(out / "points" / r["id"] / "checkpoint", out / "latency" / r["id"])
    write_text_atomic(known, json.dumps(latency, indent=2) + "\n")
    from .scaling import pareto_front

    rows = [{**r, "latency_ms": latency[r["parameters"]], "accuracy": 1 - r["id_error"]} for r in results]
    for r, on in zip(rows, pareto_front(rows)):
        r["pareto"] = on
    summary = {"dataset": ds.name, "split": {k: spec.get(k) for k in ("split", "test_groups", "seed", "val", "test")},
               "windows": {"train": len(tr), "id_test": len(va), "ood_test": len(te)}, "teacher": teacher,
               "grid": {"budgets": budgets, "fractions": fractions, "seeds": seeds}, "settings": asdict(settings),
               "points": rows, **analyse(results, ds, teacher, settings, spec.get("split") == "group")}
    write_text_atomic(out / "sweep.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomic(out / "sweep.md", format_summary(summary) + "\n")
    return summary


def _interval(iv) -> str:
    return f"[{iv[0]:.3f}, {iv[1]:.3f}]"


def format_summary(s: dict) -> str:
    kind = "grouped split: whole groups held out" if s["ood_is_grouped"] else "random split: NOT out of distribution"
    lines = [f"# Sweep on {s['dataset']}", "",
             f"{s['windows']['train']} training windows, {s['windows']['id_test']} in-distribution test windows, "
             f"{s['windows']['ood_test']} out-of-distribution test windows ({kind})."]
    if s["teacher"]:
        t = s["teacher"]
        member = f" The students learn from it mixed with MiniRocket at weight {t['minirocket_weight']:g}." \
            if t.get("minirocket_weight") else ""
        lines.append(f"Teacher: {t['parameters']:,} parameters, ID error {t['id_error']:.3f}, OOD error "
                     f"{t['ood_error']:.3f}.{member}")
    lines += ["", "| budget | params | latency ms | fraction | train windows | seed | ID error | OOD error | Pareto |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in s["points"]:
        ood = "-" if r["ood_error"] is None else f"{r['ood_error']:.3f}"
        lines.append(f"| {r['params_budget']} | {r['parameters']:,} | {r['latency_ms']:.4f} | {r['fraction']:g} | "
                     f"{r['train_windows']} | {r['seed']} | {r['id_error']:.3f} | {ood} | "
                     f"{'yes' if r['pareto'] else ''} |")
    lines += ["", "## Fits: error = E + A·X^(-alpha)", "",
              f"Intervals: {int(s['fits'].get('id_params', {}) and s['fits']['id_params']['level'] * 100 or 90)}% "
              "bootstrap over seeds.", "", "| split | X | alpha | alpha interval | E | E interval |",
              "|---|---|---|---|---|---|"]
    for key, f in s["fits"].items():
        split, x = key.split("_")
        name = {"params": "parameters N", "data": "training windows D"}[x]
        if f is None:
            lines.append(f"| {split.upper()} | {name} | not fitted (fewer than 3 sizes, or no convergence) | | | |")
        else:
            lines.append(f"| {split.upper()} | {name} | {f['alpha']:.3f} | {_interval(f['alpha_interval'])} | "
                         f"{f['E']:.3f} | {_interval(f['E_interval'])} |")
    f_id, f_ood = s["fits"]["id_params"], s["fits"]["ood_params"]
    if f_id and f_id["predictions"]:
        tried = max(m["size"] for m in f_id["measured"])
        lines += ["", "## Predicted error at untried sizes", "",
                  "| params | ID error | ID interval | OOD error | OOD interval | |", "|---|---|---|---|---|---|"]
        for i, p in enumerate(f_id["predictions"]):
            o = f_ood["predictions"][i] if f_ood else None
            lines.append(f"| {int(p['size']):,} | {p['error']:.3f} | {_interval(p['interval'])} | "
                         f"{'-' if o is None else format(o['error'], '.3f')} | "
                         f"{'-' if o is None else _interval(o['interval'])} | "
                         f"{'extrapolated' if p['size'] > tried else ''} |")
    r = s["recommendation"]
    lines.append("")
    if r:
        pen = "-" if r["predicted_ood_penalty"] is None else f"{r['predicted_ood_penalty']:+.3f}"
        lines.append(f"**Recommended student: {r['parameters']:,} parameters**, the smallest whose predicted ID error "
                     f"({r['predicted_id_error']:.3f}) is within {r['target']:g} of the {r['reference']} "
                     f"({r['reference_error']:.3f}); predicted OOD penalty {pen}"
                     f"{' (extrapolated beyond the largest tried size)' if r['extrapolated'] else ''}.")
    else:
        lines.append("No recommendation: no fit, or no size within the tried range meets the target.")
    return "\n".join(lines)


SPLIT_OPTIONS = ("split_method", "test_groups", "val", "split_seed")


def _given_options(names: tuple[str, ...]) -> list[str]:
    """The options among the parameters `names` that the command line set."""
    ctx = click.get_current_context()
    return [p.opts[0] for p in ctx.command.params
            if p.name in names and ctx.get_parameter_source(p.name) is ParameterSource.COMMANDLINE]


def _strings(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _floats(value: str) -> list[float]:
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"cannot read {value!r}: give comma-separated numbers such as 0.25,0.5,1") from None


@click.command("sweep")
@click.argument("dataset", required=False)
@click.option("--teacher", type=click.Path(file_okay=False),
              help="Distil every student from this fine-tuned teacher (its data and split are used); without it "
                   "students train on labels.")
@click.option("--params", "budgets", default="1k,3k,10k,30k", show_default=True,
              help="Comma-separated student parameter budgets.")
@click.option("--fractions", default="1", show_default=True,
              help="Comma-separated shares of the labelled training windows (for the fit in data).")
@click.option("--seeds", default=3, show_default=True,
              help="Seeds per grid point (the fits' intervals come from them).")
@options(SweepSettings)
@click.option("--split", "split_method", type=click.Choice(["random", "group"]),
              help="Without --teacher: random or group (default: the benchmark's own split, grouped).")
@click.option("--test-groups", help="Without --teacher: groups held out as the OOD test set.")
@click.option("--val", default=0.3, show_default=True,
              help="Without --teacher: share of the remaining windows held out as the in-distribution test set.")
@click.option("--seed", "split_seed", default=0, show_default=True, help="Without --teacher: seed of the split.")
@options(DataSettings, exclude=("dataset",))
@options(SignalSettings)
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="Students trained in parallel processes.")
@click.option("--ray", "ray_address", help="Submit the grid to this Ray cluster instead (needs the ray extra).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Sweep directory (a pipeline run's RUN_DIR/sweep is picked up by edgekit report).")
def sweep_command(dataset, teacher, budgets, fractions, seeds, split_method, test_groups, val, split_seed, jobs,
                  ray_address, out, **kwargs):
    """Train students over parameter budgets × data fractions × seeds, fit error = E + A·N^(-alpha) in and out of
    distribution, recommend the smallest student that meets --target, and place every model on a
    params/latency/accuracy Pareto front. Writes OUT/sweep.json and OUT/sweep.md."""
    if bool(dataset) == bool(teacher):
        raise UserError("give either DATASET (students trained on labels) or --teacher (students distilled)")
    if teacher:
        data_options = tuple(f.name for f in fields(DataSettings) + fields(SignalSettings))
        ignored = _given_options(SPLIT_OPTIONS + data_options)
        if ignored:
            raise UserError(f"{', '.join(ignored)}: the teacher's data, split and signal steps are used with "
                            "--teacher; drop them, or fine-tune a teacher on the data you want")
    data = from_options(DataSettings, kwargs, dataset=dataset)
    spec = None
    if dataset:
        from .data import load_spec
        from .data import resolve_split

        spec = data.spec()
        method, groups = resolve_split(load_spec(spec), split_method, _strings(test_groups))
        spec.update(split=method, test_groups=groups, seed=split_seed, val=val, test=0.2)
    s = run_sweep(out, spec, teacher, _strings(budgets) or [], _floats(fractions), seeds,
                  from_options(SweepSettings, kwargs), jobs=jobs, ray_address=ray_address, echo=click.echo,
                  signal=from_options(SignalSettings, kwargs))
    click.echo(format_summary(s))
