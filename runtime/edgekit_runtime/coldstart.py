"""Process start to first prediction, as `edgekit bench` measures it in a fresh interpreter.

    python -m edgekit_runtime.coldstart BUNDLE MODEL_FILE [TRUSTED_KEY ...]

loads and verifies the bundle (its signature too when keys are trusted, here or in the trust directory), streams one
window of samples through the preprocessing and the model, and prints one JSON line: seconds from interpreter start
to the first prediction, and the process's peak RSS.
"""

import time

_T0 = time.perf_counter()


def main(argv):
    import json

    import numpy as np

    from .engine import open_model
    from .model_dir import load_bundle
    from .signing import trusted_keys
    from .stream import Chunk, StreamPreprocessor

    bundle = load_bundle(argv[0], trust=trusted_keys(argv[2:]))
    model_file = next(m for m in bundle.models if m.name == argv[1])
    model = open_model(model_file)
    pre = bundle.preprocessing
    n = pre.window
    values = np.random.default_rng(0).normal(size=(n, len(pre.channels))).astype(np.float32)
    _, windows, _ = StreamPreprocessor(pre).push(Chunk(np.arange(n) / pre.sampling_rate, values))
    model.predict_proba(windows)
    elapsed = time.perf_counter() - _T0
    print(json.dumps({"import_to_prediction_s": elapsed, "peak_rss_bytes": peak_rss_bytes()}))


def peak_rss_bytes() -> int:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec,
    so a small process started by a big one would report the big one's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
