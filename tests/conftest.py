import signal
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EDGEKIT = str(Path(sys.executable).parent / "edgekit")


def interruptible():
    """Popen's preexec_fn for a command a test stops with Ctrl-C (SIGINT): a shell starts background jobs with
    SIGINT ignored and an ignored signal stays ignored across exec, so a test suite run in the background (nohup,
    `make test &`) could not interrupt the commands it starts."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def basic_motions_run(tmp_path_factory):
    """BasicMotions trained once (canonical split), exported to ONNX, and its test split written as CSV."""
    from edgekit.settings import DataSettings
    from edgekit.export import export_checkpoint
    from edgekit.train import train_student
    from edgekit.train_settings import TrainSettings

    root = tmp_path_factory.mktemp("basic_motions")
    spec = DataSettings("BasicMotions").spec()
    # a third of the default steps: the tests need a trained model, the slow tests measure the default recipe
    summary = train_student(spec, str(root / "checkpoint"), settings=TrainSettings(steps=500), progress=False)
    manifest = export_checkpoint(str(root / "checkpoint"), str(root / "model"))
    return {"root": root, "summary": summary, "manifest": manifest}


@pytest.fixture(scope="session")
def basic_motions_tflite(basic_motions_run):
    """The same checkpoint exported to TFLite fp32 (a conversion takes seconds: done once per session)."""
    from edgekit.export import export_checkpoint
    from edgekit.settings import ExportSettings

    out = basic_motions_run["root"] / "model-tflite"
    export_checkpoint(str(basic_motions_run["root"] / "checkpoint"), str(out), ExportSettings("tflite"))
    return out
