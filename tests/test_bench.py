"""`edgekit bench`: what it reports, and --compare's exit status on a regression."""

import json
import subprocess

import pytest

from conftest import EDGEKIT
from edgekit.bundle import build_bundle


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
