"""`edgekit bench`: what it reports, and --compare's exit status on a regression."""

import json
import shutil
import subprocess

import numpy as np
import pytest

from conftest import EDGEKIT
from edgekit.bundle import build_bundle
from test_hostile_bundles import one_error, rehash


@pytest.fixture(scope="module")
def bench_run(basic_motions_run, tmp_path_factory):
    root = basic_motions_run["root"]
    out = tmp_path_factory.mktemp("bench")
    build_bundle([str(root / "model")], str(out / "b"), checkpoint=str(root / "checkpoint"))
    r = subprocess.run([EDGEKIT, "bench", str(out / "b"), "--quick", "--json", str(out / "bench.json")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return out, r.stdout, json.loads((out / "bench.json").read_text())


def test_bench_reports_every_measurement(bench_run, basic_motions_run):
    _, table, res = bench_run
    cs = res["cold_start"]
    assert cs["no_cache_s"] > 0 and cs["cached_s"] > 0 and cs["peak_rss_bytes"] > 0
    p = res["preprocess"]
    assert p["max_abs_diff"] < 1e-5 and p["numba"]["median_ms"] > 0 and p["numpy"]["median_ms"] > 0
    (m,) = res["models"]
    assert (m["file"], m["backend"], m["precision"]) == ("model-fp32.onnx", "onnxruntime", "fp32")
    assert 0 < m["latency"]["median_ms"] <= m["latency"]["p90_ms"] <= m["latency"]["p99_ms"]
    assert m["windows_per_second"]["best"] >= m["windows_per_second"]["by_batch"]["1"] > 0
    # the board's accuracy on the embedded raw windows is the compile side's test accuracy
    assert m["accuracy"] == m["accuracy_at_bundling"] == basic_motions_run["summary"]["metrics"]["test_accuracy"]
    assert m["bytes"] > 1000 and res["bundle_bytes"] > m["bytes"] and res["peak_rss_bytes"] > 0
    assert set(res["hardware"]) >= {"cpu", "cores", "arch", "os", "versions"}
    for text in ("cold start", "preprocess", "model-fp32.onnx", "peak RSS", "hardware"):
        assert text in table


def compare(out, old: dict, *extra):
    path = out / "old.json"
    path.write_text(json.dumps(old))
    return subprocess.run([EDGEKIT, "bench", str(out / "b"), "--quick", "--compare", str(path), *extra],
                          capture_output=True, text=True, timeout=300)


def test_compare_exits_3_on_a_regression(bench_run):
    out, _, res = bench_run
    faster = json.loads(json.dumps(res))
    faster["models"][0]["latency"]["median_ms"] /= 100  # the old run was 100x faster: now is a regression
    r = compare(out, faster)
    assert r.returncode == 3, r.stderr
    assert "latency_median_ms model-fp32.onnx" in r.stderr and "REGRESSION" in r.stdout


def test_compare_passes_against_a_slower_old_run_and_reports_ratios(bench_run):
    out, _, res = bench_run
    slower = json.loads(json.dumps(res))
    slower["cold_start"]["cached_s"] *= 100
    slower["preprocess"]["numba"]["median_ms"] *= 100
    for key in ("median_ms", "p99_ms"):
        slower["models"][0]["latency"][key] *= 100
    for key in ("batch_1", "best"):
        slower["models"][0]["windows_per_second"][key] /= 100
    r = compare(out, slower)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "compared with old run" in r.stdout and "REGRESSION" not in r.stdout


def test_a_quick_runs_p99_is_shown_but_not_held_against_it(bench_run):
    out, _, res = bench_run
    old = json.loads(json.dumps(res))
    for m in old["models"]:
        m["latency"]["p99_ms"] /= 1e6  # beyond any threshold below
    r = compare(out, old, "--threshold", "1000")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "latency_p99_ms model-fp32.onnx" in r.stdout


def test_compare_flags_an_accuracy_drop(bench_run):
    out, _, res = bench_run
    better = json.loads(json.dumps(res))
    better["models"][0]["accuracy"] = 1.01  # impossible, so the real run is always a drop from it
    better["cold_start"]["cached_s"] *= 100
    r = compare(out, better, "--threshold", "1000")
    assert r.returncode == 3 and "accuracy model-fp32.onnx" in r.stderr


def test_compare_with_something_else_is_a_user_error(bench_run):
    out, _, _ = bench_run
    r = compare(out, {"hello": 1})
    assert r.returncode == 1 and "not an `edgekit bench --json` result" in r.stderr


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["cold_start"].update(cached_s="0.2"), 'cold_start.cached_s: expected a positive number, got "0.2"'),
    (lambda r: r["preprocess"]["numba"].pop("median_ms"), "preprocess.numba.median_ms: missing"),
    (lambda r: r["models"][0]["latency"].update(median_ms=0), "models[0].latency.median_ms: expected a positive"),
    (lambda r: r["models"][0]["windows_per_second"].update(best=-5.0), "models[0].windows_per_second.best: expected"),
    (lambda r: r["models"][0].update(accuracy=True), "models[0].accuracy: expected a non-negative number, got true"),
    (lambda r: r.pop("models"), "models: missing, and no model skipped"),
])
def test_a_baseline_that_is_not_a_bench_result_is_refused_naming_file_and_key(bench_run, edit, message):
    out, _, res = bench_run
    old = json.loads(json.dumps(res))
    edit(old)
    r = compare(out, old)
    assert f"old.json: {message}" in one_error(r)
    assert r.stdout == ""  # refused before measuring


def test_compare_says_which_metrics_the_old_run_lacks(bench_run):
    """A real run where no model ran (its backend was not installed there) has no "models": what is common is
    compared, and each metric the old run lacks gets a row saying so."""
    out, _, res = bench_run
    old = json.loads(json.dumps(res))
    old["skipped_models"] = [m["file"] for m in old.pop("models")]
    del old["cold_start"]  # measured only with a model that runs
    old["preprocess"]["numba"]["median_ms"] *= 100  # no regression on a busy machine
    r = compare(out, old)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("latency_median_ms model-fp32.onnx")]
    assert len(rows) == 1 and rows[0].endswith("not in the old run")


@pytest.mark.parametrize("threshold", ["nan", "-1", "0", "inf"])
def test_threshold_must_be_a_finite_number_above_0(bench_run, threshold):
    out, _, res = bench_run
    assert "--threshold" in one_error(compare(out, res, "--threshold", threshold))


def tampered(out, tmp_path, change):
    """A copy of the bench bundle, changed by `change(dir)`, with every digest recomputed (verify accepts it)."""
    b = tmp_path / "b"
    shutil.copytree(out / "b", b)
    change(b)
    return rehash(b)


def test_a_bundle_with_0_evaluation_windows_is_measured_without_accuracy(bench_run, tmp_path):
    def empty_eval(b):
        with np.load(b / "eval.npz") as z:
            arrays = {k: z[k][:0] for k in z.files}
        np.savez(b / "eval.npz", **arrays)

    b = tampered(bench_run[0], tmp_path, empty_eval)
    r = subprocess.run([EDGEKIT, "bench", str(b), "--quick", "--windows", "20", "--json", str(tmp_path / "r.json")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (m,) = json.loads((tmp_path / "r.json").read_text())["models"]
    assert "accuracy" not in m and m["latency"]["median_ms"] > 0


def test_a_model_the_cold_start_process_cannot_load_is_a_one_line_error(bench_run, tmp_path):
    b = tampered(bench_run[0], tmp_path, lambda b: (b / "model-fp32.onnx").write_bytes(b""))
    r = subprocess.run([EDGEKIT, "bench", str(b), "--quick"], capture_output=True, text=True, timeout=300)
    assert "model-fp32.onnx: onnxruntime cannot load this model" in one_error(r)
