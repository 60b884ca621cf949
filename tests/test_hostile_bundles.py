"""Hostile bundles (issue 15, rows 4-9) and signed bundles: every refusal is one line naming the file and the
field, nothing unusable reaches a model, and nothing a model reads escapes the manifest's digests or its
signature. Built on a tiny hand-made ONNX model (no training), so the whole file runs in seconds."""

import io
import json
import math
import subprocess
import tarfile
import zipfile

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from conftest import EDGEKIT
from edgekit.bundle import build_bundle
from edgekit_runtime.errors import UserError
from edgekit_runtime.model_dir import load_bundle, sha256_file
from edgekit_runtime.runner import Runner
from edgekit_runtime.signing import generate_key, read_public_key, sign_manifest

CHANNELS, WINDOW, CLASSES = ["a", "b"], 16, ["x", "y", "z"]
PRE = {"channels": CHANNELS, "sampling_rate": 10.0, "window": WINDOW, "stride": WINDOW, "normalize": "stored",
       "mean": [0.5, -0.5], "std": [2.0, 1.0], "classes": CLASSES}


def onnx_model(window=WINDOW, outputs=len(CLASSES), location=None) -> onnx.ModelProto:
    """Flatten + MatMul: [N, 2, window] -> [N, outputs]; the weights optionally in an external file."""
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(2 * window, outputs)).astype(np.float32), "W")
    if location is not None:
        w.data_location = TensorProto.EXTERNAL
        w.external_data.add(key="location", value=location)
        w.ClearField("raw_data")
    g = helper.make_graph([helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["y"])],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, window])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", outputs])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def rehash(b, drop_signature=False):
    """What an attacker does after editing: recompute every digest (and drop or keep the old signature)."""
    m = json.loads((b / "manifest.json").read_text())
    m["files"] = {p.name: sha256_file(p) for p in sorted(b.iterdir())
                  if p.name not in ("manifest.json", "manifest.sig")}
    (b / "manifest.json").write_text(json.dumps(m))
    if drop_signature:
        (b / "manifest.sig").unlink(missing_ok=True)
    return b


def sign(b, key):
    (b / "manifest.sig").write_bytes(sign_manifest((b / "manifest.json").read_bytes(), key))
    return b


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A format-1 model directory (as `edgekit export` writes), a key pair, and a signed bundle with eval.npz."""
    root = tmp_path_factory.mktemp("hostile")
    src = root / "model"
    src.mkdir()
    onnx.save(onnx_model(), src / "model-fp32.onnx")
    (src / "preprocess.json").write_text(json.dumps(PRE))
    (src / "manifest.json").write_text(json.dumps({
        "format": 1, "files": {n: sha256_file(src / n) for n in ("model-fp32.onnx", "preprocess.json")},
        "model": {"file": "model-fp32.onnx", "format": "onnx", "precision": "fp32"}, "verification": {}}))
    key, pub = generate_key(root / "key")
    other, other_pub = generate_key(root / "other")
    build_bundle([str(src)], str(root / "signed"))
    rng = np.random.default_rng(1)
    np.savez_compressed(root / "signed" / "eval.npz", windows=rng.normal(size=(6, 2, WINDOW)).astype(np.float32),
                        labels=np.arange(6) % 3)
    m = json.loads((root / "signed" / "manifest.json").read_text())
    m["eval"] = {"file": "eval.npz", "windows": 6}
    (root / "signed" / "manifest.json").write_text(json.dumps(m))
    sign(rehash(root / "signed"), key)
    return {"root": root, "src": src, "bundle": root / "signed", "key": key, "pub": pub, "other": other,
            "other_pub": other_pub}


@pytest.fixture
def b(made, tmp_path):
    """A fresh copy of the signed bundle to tamper with."""
    dst = tmp_path / "b"
    dst.mkdir()
    for p in made["bundle"].iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def edgekit(*args, env=None):
    import os

    return subprocess.run([EDGEKIT, *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def one_error(r):
    errors = [line for line in r.stderr.splitlines() if line.startswith("edgekit: error:")]
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(errors) == 1, r.stderr
    return errors[0]


def refused(bundle, *match, trust=None):
    """load_bundle and Runner (what `run` does before writing) both refuse, with one line naming `match`."""
    for use in (lambda: load_bundle(bundle, trust=trust), lambda: Runner(bundle, trust=trust)):
        with pytest.raises(UserError) as e:
            use()
        msg = str(e.value)
        assert "\n" not in msg and all(m in msg for m in match), msg
    return msg


def edit_json(b, name, change):
    d = json.loads((b / name).read_text())
    change(d)
    (b / name).write_text(json.dumps(d))
    return b


# --- signing -------------------------------------------------------------------------------------------------

def test_keygen_writes_a_private_key_only_its_owner_can_read(made):
    assert made["key"].stat().st_mode & 0o777 == 0o600
    assert len(read_public_key(made["pub"])) == 32
    r = edgekit("keygen", made["key"])
    assert "already exists" in one_error(r)
    assert "keygen" in edgekit("--help").stdout and "--sign" in edgekit("bundle", "--help").stdout


def test_a_bundle_signed_by_the_trusted_key_is_accepted_and_info_shows_the_signer(made):
    r = edgekit("verify", made["bundle"], "--trust", made["pub"])
    assert r.returncode == 0, r.stderr
    fp = load_bundle(made["bundle"], trust=[read_public_key(made["pub"])]).signer
    assert fp.startswith("SHA256:") and f"signed by {fp}" in r.stdout
    assert "model  model-fp32.onnx: onnx fp32, loaded, shapes match" in r.stdout
    r = edgekit("info", made["bundle"], "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["signer"] == fp, r.stderr


def test_edgekit_bundle_sign_and_run_with_a_trust_directory(made, tmp_path):
    out = tmp_path / "b.tar.gz"
    r = edgekit("bundle", made["src"], "--out", out, "--sign", made["key"])
    assert r.returncode == 0 and "signed in manifest.sig" in r.stdout, r.stderr
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "ops.pub").write_bytes(made["pub"].read_bytes())
    rows = "time,a,b\n" + "".join(f"{i / 10},{i % 3},{-i % 5}\n" for i in range(32))
    r = subprocess.run([EDGEKIT, "run", str(out), "-"], input=rows, capture_output=True, text=True,
                       env={**__import__("os").environ, "EDGEKIT_TRUST_DIR": str(trust)})
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2, r.stderr
    # the same board refuses an unsigned bundle
    r = edgekit("bundle", made["src"], "--out", tmp_path / "u")
    assert r.returncode == 0, r.stderr
    r = edgekit("run", tmp_path / "u", "-", "--out", tmp_path / "o.jsonl", env={"EDGEKIT_TRUST_DIR": str(trust)})
    assert "manifest.sig: missing" in one_error(r) and not (tmp_path / "o.jsonl").exists()


def test_unsigned_bundle_is_refused_when_a_key_is_trusted(made, b):
    (b / "manifest.sig").unlink()
    load_bundle(b)  # without trust: checked by digests only
    refused(b, "manifest.sig: missing", trust=[read_public_key(made["pub"])])
    assert "unsigned" in one_error(edgekit("verify", b, "--trust", made["pub"]))


def test_bench_and_its_cold_start_child_accept_a_bundle_signed_by_the_trusted_key(made, tmp_path):
    r = edgekit("bench", made["bundle"], "--quick", "--trust", made["pub"], "--json", tmp_path / "b.json")
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["cold_start"]["cached_s"] > 0 and result["models"][0]["latency"]["median_ms"] > 0


def test_the_python_api_is_held_to_the_boards_trust_directory(made, b, tmp_path, monkeypatch):
    """Runner and load_bundle without `trust=` take the trust directory, as the command line does; trust=[] is
    the explicit way to check digests only."""
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "ops.pub").write_bytes(made["pub"].read_bytes())
    monkeypatch.setenv("EDGEKIT_TRUST_DIR", str(trust))
    assert load_bundle(made["bundle"]).signer is not None  # signed by the trusted key
    rehash(b, drop_signature=True)
    for use in (lambda: load_bundle(b), lambda: Runner(b)):
        with pytest.raises(UserError, match="manifest.sig: missing"):
            use()
    assert load_bundle(b, trust=[]).signer is None


def test_bundle_signed_by_another_key_is_refused(made, b):
    sign(b, made["other"])
    refused(b, "manifest.sig: signed by", "not a trusted key", trust=[read_public_key(made["pub"])])
    assert "not a trusted key" in one_error(edgekit("bench", b, "--quick", "--trust", made["pub"]))


@pytest.mark.parametrize("tamper", ["classes", "precision", "metrics", "model"])
def test_row5_tampering_with_recomputed_digests_breaks_the_signature(made, b, tamper):
    if tamper == "classes":
        edit_json(b, "preprocess.json", lambda p: p.update(classes=p["classes"][::-1]))
        edit_json(b, "manifest.json", lambda m: m.update(classes=m["classes"][::-1]))
    elif tamper == "precision":
        edit_json(b, "manifest.json", lambda m: m["models"][0].update(precision="int8"))
    elif tamper == "metrics":
        edit_json(b, "manifest.json", lambda m: m["model"].update(test_accuracy=0.999))
    else:
        onnx.save(onnx_model(), b / "model-fp32.onnx")  # same shapes, other weights ...
        m = onnx.load(b / "model-fp32.onnx")
        m.graph.initializer[0].raw_data = np.ones((32, 3), np.float32).tobytes()
        onnx.save(m, b / "model-fp32.onnx")
    rehash(b)  # the digests agree again, the old signature does not
    refused(b, "manifest.sig: signature does not match manifest.json")
    (b / "manifest.sig").unlink()
    load_bundle(b)  # digests alone cannot tell ...
    refused(b, "manifest.sig: missing", trust=[read_public_key(made["pub"])])  # ... a board trusting a key can


def test_garbage_signatures_are_one_line_errors(b):
    for junk in (b"", b"{", b'{"algorithm": "ed25519"}', b"\xff" * 5000, b'{"algorithm": "ed25519", '
                 b'"public_key": "AAAA", "signature": "AAAA"}'):
        (b / "manifest.sig").write_bytes(junk)
        refused(b, "manifest.sig")


# --- rows 4 and 8: preprocess.json and manifest.json against their schema -----------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("mean", [float("nan"), 0.0], "mean"),
    ("std", [1.0, float("inf")], "std"),
    ("std", [1.0, -1.0], "std[1]"),
    ("mean", [1e300, 0.0], "mean[0]"),
    ("mean", [0.0], "mean: expected 2 to 2 entries"),
    ("sampling_rate", 0, "sampling_rate"),
    ("window", "16", "window: expected an integer, got a string"),
    ("window", True, "window: expected an integer, got a boolean"),
    ("channels", ["a", "a"], "channels: names repeat"),
    ("classes", "x", "classes: expected a list"),
    ("filter", {"sos": [[1, 0, 0, 1, -2.5, 1.2]], "zi": [[0, 0]]}, "filter.sos[0]: unstable section"),
    ("filter", {"sos": [[1, 0, 0, 1, 0, 1.0]], "zi": [[0, 0]]}, "filter.sos[0]: unstable section"),
    ("filter", {"sos": [[1, 0, 0, 1, 0.1, 0.1]], "zi": [[0, float("nan")]]}, "filter.zi[0][1]"),
    ("filter", {"sos": [[1, 0, 0, 1, 0.1]], "zi": [[0, 0]]}, "filter.sos[0]: expected 6 to 6 entries"),
    ("resample", {"max_gap_s": -1}, "resample.max_gap_s"),
])
def test_row4_preprocess_json_with_non_finite_or_unstable_values_is_refused(made, b, field, value, message):
    edit_json(b, "preprocess.json", lambda p: p.update({field: value}))  # json writes NaN/Infinity literals
    refused(sign(rehash(b), made["key"]), "preprocess.json", message)


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000 + "]" * 100_000, "nested"),
    ('{"format": 2, "files": ' + "[" * 20 + "]" * 20 + "}", "nested more than"),
    ('{"format": 2, "x": ' + "9" * 5000 + "}", "a number of 5000 digits"),
    ('{"format": 2, "x": 1e999}', "beyond the range"),
    ('{"format": 2, "x": NaN}', "NaN is not a number"),
    ("[1, 2]", "expected a JSON object"),
    ('{"format": 2, "files": "model-fp32.onnx"}', "files: expected an object, got a string"),
    ('{"format": 2, "files": {"../../etc/passwd": "' + "0" * 64 + '"}}', "names a file outside the bundle"),
    ('{"format": true}', "unsupported manifest format True"),
    ("\xff\xfe", "not valid JSON"),
])
def test_row8_malformed_manifests_are_one_line_errors(b, text, message):
    (b / "manifest.json").write_bytes(text.encode("utf-8", "surrogateescape") if text != "\xff\xfe" else b"\xff\xfe")
    (b / "manifest.sig").unlink()
    refused(b, "manifest.json", message)


@pytest.mark.parametrize("change, message", [
    (lambda m: m["models"][0].update(file=["x"]), "models[0].file: expected a string, got a list"),
    (lambda m: m.update(models={"file": "model-fp32.onnx"}), "models: expected a list, got an object"),
    (lambda m: m["input"].update(window=-1), "input.window: expected 1 to"),
    (lambda m: m.update(eval={"file": "eval.npz", "windows": "6"}), "eval.windows: expected an integer"),
    (lambda m: m.update(classes=[1, 2, 3]), "classes[0]: expected a string"),
])
def test_row8_a_string_where_an_object_belongs_names_the_field(b, change, message):
    edit_json(b, "manifest.json", change)
    (b / "manifest.sig").unlink()
    refused(b, "manifest.json", message)


def test_rows4_and_8_the_cli_refuses_in_one_line_naming_file_and_field(made, b):
    edit_json(b, "preprocess.json", lambda p: p.update(mean=[float("nan"), 0.0]))
    sign(rehash(b), made["key"])
    assert "preprocess.json: mean[0]: refusing NaN" in one_error(edgekit("verify", b))
    out = b.parent / "out.jsonl"
    assert "preprocess.json: mean[0]" in one_error(edgekit("run", b, "-", "--out", out)) and not out.exists()
    (b / "manifest.sig").unlink()
    (b / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    assert "manifest.json: nested more than" in one_error(edgekit("info", b))
    (b / "manifest.json").write_text('{"format": 2, "models": [{"bytes": ' + "9" * 5000 + "}]}")
    assert "manifest.json: models[0].bytes: refusing a number of 5000 digits" in one_error(edgekit("verify", b))


# --- row 6: every byte a model reads is hashed ----------------------------------------------------------------

def with_external_model(b, location, data_name=None):
    onnx.save(onnx_model(location=location), b / "model-fp32.onnx")
    if data_name is not None:
        np.random.default_rng(0).normal(size=(2 * WINDOW, 3)).astype(np.float32).tofile(b / data_name)
    return b


def test_row6_external_data_not_listed_in_the_manifest_is_refused(made, b):
    with_external_model(b, "weights.bin", "weights.bin")
    m = json.loads((b / "manifest.json").read_text())
    m["files"]["model-fp32.onnx"] = sha256_file(b / "model-fp32.onnx")
    (b / "manifest.json").write_text(json.dumps(m))
    sign(b, made["key"])
    refused(b, "weights.bin is in the bundle but not in the manifest's sha256 table")


def test_row6_listed_external_data_is_covered_by_digest_and_signature(made, b):
    sign(rehash(with_external_model(b, "weights.bin", "weights.bin")), made["key"])
    trust = [read_public_key(made["pub"])]
    r = Runner(b, trust=trust)  # accepted: the model and its weights file are both hashed and signed
    assert r.model.predict_proba(np.zeros((1, 2, WINDOW), np.float32)).shape == (1, 3)
    data = bytearray((b / "weights.bin").read_bytes())
    data[0] ^= 1
    (b / "weights.bin").write_bytes(bytes(data))
    refused(b, "weights.bin does not match its sha256", trust=trust)


@pytest.mark.parametrize("location", ["../../weights.bin", "/etc/passwd", "sub/../../weights.bin"])
def test_row6_external_data_outside_the_bundle_is_refused(made, b, location):
    with_external_model(b, location)
    (b.parent / "weights.bin").write_bytes(b"\0" * (2 * WINDOW * 3 * 4))
    refused(sign(rehash(b), made["key"]), "model-fp32.onnx: external data", "outside the bundle")


def test_row6_unlisted_files_and_links_are_refused(b, tmp_path):
    (b / "notes.txt").write_text("hi")
    refused(b, "notes.txt is in the bundle but not in the manifest")
    (b / "notes.txt").unlink()
    (b / "link.onnx").symlink_to(b / "model-fp32.onnx")
    refused(b, "link.onnx is a link")


# --- row 7: models loaded and checked against the manifest ----------------------------------------------------

@pytest.mark.parametrize("model, message", [
    (b"garbage that hashes fine", "not a valid ONNX model"),
    (onnx_model(window=50), "input: the model does not take windows [N, 2, 16]"),
    (onnx_model(outputs=4), "output: the model gives 4 class scores, the bundle lists 3 classes"),
])
def test_row7_a_model_that_does_not_fit_the_bundle_is_refused_before_run_writes(made, b, tmp_path, model, message):
    (b / "model-fp32.onnx").write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    sign(rehash(b), made["key"])
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        Runner(b)
    out = tmp_path / "out.jsonl"
    r = edgekit("run", b, "-", "--out", out)
    assert message.split(":")[0] in one_error(r) and not out.exists()
    assert message.split(":")[0] in one_error(edgekit("verify", b))



def tflite_model(window=WINDOW, outputs=len(CLASSES)) -> bytes:
    """Flatten + Linear as .tflite (fixed batch of 1, as edgekit exports): [1, 2, window] -> [1, outputs]."""
    import torch

    from edgekit_exporters.tflite_export import to_tflite

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * window, outputs)).eval()
    return to_tflite(model, torch.zeros(1, 2, window))


@pytest.mark.parametrize("model, message", [
    (b"garbage that hashes fine", "model-fp32.tflite"),
    ("window", "input: the model takes [1, 2, 50], which does not fit windows [N, 2, 16]"),
    ("outputs", "output: the model gives 4 class scores, the bundle lists 3 classes"),
])
def test_row7_a_tflite_model_that_does_not_fit_the_bundle_is_refused(made, b, model, message):
    """The same checks through LiteRT: a file that is not a model, or one whose shapes do not fit."""
    if model == "window":
        model = tflite_model(window=50)
    elif model == "outputs":
        model = tflite_model(outputs=4)
    (b / "model-fp32.onnx").unlink()
    (b / "model-fp32.tflite").write_bytes(model)
    edit_json(b, "manifest.json", lambda m: m["models"][0].update(file="model-fp32.tflite", format="tflite"))
    sign(rehash(b), made["key"])
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        Runner(b)
    assert message.split(":")[0] in one_error(edgekit("verify", b))

# --- row 9: eval.npz and archives --------------------------------------------------------------------------

@pytest.mark.parametrize("content, message", [
    (b"", "eval.npz: not an .npz archive"),
    (b"this is not a zip file", "eval.npz: not an .npz archive"),
    ("nan", "eval.npz: windows: holds NaN"),
    ("extra", "eval.npz: expected exactly the arrays"),
])
def test_row9_bad_eval_npz_is_a_one_line_error(made, b, content, message):
    if content == "nan":
        w = np.zeros((3, 2, WINDOW), np.float32)
        w[1, 0, 3] = np.nan
        np.savez(b / "eval.npz", windows=w, labels=np.zeros(3, np.int64))
    elif content == "extra":
        np.savez(b / "eval.npz", windows=np.zeros((3, 2, WINDOW)), labels=np.zeros(3, np.int64), x=np.zeros(1))
    else:
        (b / "eval.npz").write_bytes(content)
    sign(rehash(b), made["key"])
    assert message in one_error(edgekit("verify", b))
    with pytest.raises(UserError, match=message):
        load_bundle(b).eval_set()


def test_row9_eval_npz_that_would_inflate_beyond_the_limit_is_refused(made, b):
    with zipfile.ZipFile(b / "eval.npz", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("windows.npy", b"\0" * (300 << 20))
        z.writestr("labels.npy", b"")
    sign(rehash(b), made["key"])
    with pytest.raises(UserError, match="unpacks to more than 256 MiB"):
        load_bundle(b).eval_set()


def tar_of(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for name, kind in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            tf.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    return path


def test_row9_deeply_nested_archive_is_refused(tmp_path):
    name = "/".join(["d"] * 2000)
    archive = tar_of(tmp_path / "deep.tar.gz", [(name, tarfile.DIRTYPE)])
    with pytest.raises(UserError, match="nested more than"):
        load_bundle(archive)
    assert "nested more than" in one_error(edgekit("verify", archive))


def test_row9_archive_with_many_members_is_refused_quickly(tmp_path):
    archive = tar_of(tmp_path / "many.tar.gz", [(f"f{i}", tarfile.REGTYPE) for i in range(20_000)])
    with pytest.raises(UserError, match="more than 256 archive members"):
        load_bundle(archive)
    assert not list(tmp_path.glob("edgekit-bundle-*"))


# --- property-based: malformed manifests and preprocess.json ------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.text(max_size=5)
    | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0, -1, 1e308, 1e-320, 3e38, "fp32", "onnx"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=8)


def _paths(value, prefix=()):
    """Every path (keys / indices) into a JSON value, including the root."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        yield from _paths(v, (*prefix, k))


def _replace(doc, path, value):
    if not path:
        return value
    target = doc
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    return doc


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(data=st.data())
def test_malformed_json_never_crashes_and_never_gives_nan(made, tmp_path_factory, data):
    """Replace one field (anywhere) of manifest.json or preprocess.json with an arbitrary JSON value, recompute
    the digests and sign: the bundle is refused with a one-line UserError, or it runs with finite output."""
    b = tmp_path_factory.mktemp("prop")
    for p in made["bundle"].iterdir():
        (b / p.name).write_bytes(p.read_bytes())
    name = data.draw(st.sampled_from(["manifest.json", "preprocess.json"]))
    doc = json.loads((b / name).read_text())
    path = data.draw(st.sampled_from(list(_paths(doc))))
    doc = _replace(doc, path, data.draw(JSON_VALUES))
    (b / name).write_text(json.dumps(doc))
    if name == "preprocess.json":
        rehash(b)
    sign(b, made["key"])
    try:
        r = Runner(b, trust=[read_public_key(made["pub"])])
        evals = r.bundle.eval_set()  # None when the edit dropped the eval entry: any windows will do
        windows = evals[0] if evals is not None else np.zeros((2, len(CHANNELS), WINDOW), np.float32)
    except UserError as e:
        assert "\n" not in str(e)
        return
    probs = r.model.predict_proba(r.pre.prepare_windows(windows))
    assert np.isfinite(probs).all() and probs.shape == (len(windows), len(r.bundle.classes))
    assert math.isclose(float(probs.sum(axis=1).mean()), 1.0, rel_tol=1e-6)
