"""`edgekit report`: one self-contained HTML page, checked as written and as rendered by headless Chromium."""

import base64
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from edgekit.pipeline import run_pipeline
from edgekit.recipe import parse_recipe
from edgekit.sweep import SweepSettings, run_sweep
from edgekit_runtime.cli import main

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# flags that let Chromium start headless as root on a machine without network or display
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RECIPE = """
name = "report-test"
[data]
dataset = "BasicMotions"
[teacher]
pretrained = "none"
size = "tiny"
[pretrain]
steps = 0
[finetune]
epochs = 2
[student]
params = "2k"
[distill]
epochs = 2
[[export]]
format = "onnx"
precision = "fp32"
[[export]]
format = "onnx"
precision = "int8"
[bundle]
eval_windows = 8
[bench]
windows = 8
"""
PLOTS = 5  # two confusion matrices, ID and OOD fits, Pareto front
# appended only to the copy Chromium opens: records how many images decoded once the page has loaded
PROBE = ('<script>addEventListener("load",()=>{const i=[...document.images];document.body.setAttribute('
         '"data-images",i.length+"/"+i.filter(x=>x.complete&&x.naturalWidth>0).length)});</script></body>')


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    recipe = root / "r.toml"
    recipe.write_text(RECIPE)
    run = root / "run"
    run_pipeline(parse_recipe(RECIPE, recipe), run, progress=False, echo=lambda s: None)
    run_sweep(str(run / "sweep"), None, str(run / "finetune" / "teacher"), ["1k", "3k", "10k"], [1.0], 1,
              SweepSettings(epochs=2, target=1.0), echo=lambda s: None)  # any size meets the target
    r = CliRunner().invoke(main, ["report", str(run)])
    assert r.exit_code == 0, r.output
    return run / "report.html"


def test_report_is_self_contained_with_every_section_and_plot(report):
    page = report.read_text()
    for heading in ("Recipe", "Data", "Teacher and student", "Confusion matrices", "Scaling laws and student size",
                    "Export verification", "Bench"):
        assert f">{heading}</h" in page
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) == PLOTS
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "<script" not in page and not re.search(r'(src|href)="(https?:)?//', page)
    assert "model-int8.onnx" in page
    assert "Recommended student" in page


def test_report_renders_in_headless_chromium_with_its_plots_and_no_console_messages(report, tmp_path):
    if not shutil.which(CHROMIUM):
        pytest.skip("chromium is not installed and could not be installed (make test installs it with apt-get "
                    "when run as root)")
    probe = tmp_path / "report.html"
    probe.write_text(report.read_text().replace("</body>", PROBE))
    r = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
                        "--v=0", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f'data-images="{PLOTS}/{PLOTS}"' in r.stdout  # every plot decoded
    assert "Confusion matrices" in r.stdout
    console = [line for line in r.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console


def test_report_of_a_directory_that_is_no_run_is_one_line(tmp_path):
    r = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert r.exit_code == 1 and "not a pipeline run directory" in r.output and r.output.count("\n") == 1
