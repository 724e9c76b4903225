"""`bptrain export --out model.onnx`: every preset and a user-style config, read back by the
real ONNX tools (onnx's checker, ONNX Runtime on the CPU) and held against bptrain's forward."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bptrain import __version__
from bptrain.config import preset_names
from bptrain.run import checkpoint
from cli_helpers import invoke, records, subprocess_env

onnx = pytest.importorskip("onnx", reason="the export extra (onnx) is not installed")
onnxruntime = pytest.importorskip(
    "onnxruntime", reason="onnxruntime (in the dev extra) is not installed"
)

NAMES = (*preset_names(), "every-layer")


def export(checkpoint_path, out, *extra):
    result = invoke("export", checkpoint_path, "--out", out, *extra)
    assert result.exit_code == 0, result.stderr
    (record,) = records(result.stdout)
    return record


def run_onnx(path, x):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["probabilities", "logits"], {"pixels": x})


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_runs_in_onnx_runtime_as_in_bptrain(name, trained, tmp_path, forward, pixels):
    out = tmp_path / f"{name}.onnx"
    record = export(trained[name], out)
    assert record["event"] == "export"
    assert (record["format"], record["out"]) == ("onnx", str(out))
    assert (record["opset"], record["ir_version"], record["complete"]) == (13, 7, True)
    verified = record["verified"]
    assert verified["samples"] == 64 + 200  # seeded inputs and the run's 200 test images
    assert verified["max_abs_diff"] <= 1e-5 and verified["argmax_agreement"] == 1.0
    onnx.checker.check_model(str(out), full_check=True)
    for n in (1, 7):  # the batch dimension is dynamic
        x = pixels(n, seed=n)
        probabilities, logits = run_onnx(out, x)
        ours = forward(trained[name], x)
        assert probabilities.shape == logits.shape == (n, 10)
        np.testing.assert_allclose(probabilities, ours, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(probabilities.argmax(axis=1), ours.argmax(axis=1))
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        np.testing.assert_allclose(e / e.sum(axis=1, keepdims=True), probabilities, atol=1e-6)


def test_the_graph_is_the_layer_stack_in_inference_form(trained, tmp_path):
    export(trained["cnn-deep"], tmp_path / "c.onnx")
    model = onnx.load(str(tmp_path / "c.onnx"))
    ops = [node.op_type for node in model.graph.node]
    block = ["Conv", "BatchNormalization", "Relu", "MaxPool"]
    dense = ["Flatten", "Gemm", "BatchNormalization", "Relu", "Identity", "Gemm", "Softmax"]
    assert ops == [*block, *block, *dense]
    (graph_input,) = model.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "pixels"
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 1, 28, 28]
    assert [o.name for o in model.graph.output] == ["probabilities", "logits"]
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 13)]
    assert model.ir_version == 7
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    assert len(bn.output) == 1  # the inference form: no running statistics out


def test_every_layer_type_is_exported(trained, tmp_path):
    export(trained["every-layer"], tmp_path / "e.onnx")
    model = onnx.load(str(tmp_path / "e.onnx"))
    nodes = {node.op_type: node for node in model.graph.node}
    assert set(nodes) == {
        "Conv", "LeakyRelu", "AveragePool", "BatchNormalization", "Tanh", "MaxPool",
        "Flatten", "Gemm", "Sigmoid", "Identity", "Softmax",
    }  # fmt: skip
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes["Conv"].attribute}
    assert (attrs["strides"], attrs["pads"], attrs["kernel_shape"]) == ([2, 2], [1] * 4, [3, 3])
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes["AveragePool"].attribute}
    assert (attrs["kernel_shape"], attrs["strides"]) == ([3, 3], [2, 2])
    alpha = onnx.helper.get_attribute_value(nodes["LeakyRelu"].attribute[0])
    assert alpha == pytest.approx(0.1)


def test_metadata_says_what_the_model_is(trained, tmp_path):
    export(trained["mlp"], tmp_path / "m.onnx")
    model = onnx.load(str(tmp_path / "m.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    stored = checkpoint.load(trained["mlp"])
    assert json.loads(meta["class_names"]) == [str(i) for i in range(10)]
    assert meta["dataset"] == "idx"
    assert meta["bptrain_version"] == __version__ == model.producer_version
    assert float(meta["test_accuracy"]) == stored.metrics["test_accuracy"]
    assert meta["weights"] == meta["test_accuracy_weights"] == stored.weights
    assert meta["complete"] == "true"
    assert json.loads(meta["input_shape"]) == ["N", 1, 28, 28]
    assert "[0, 1]" in meta["preprocessing"] and "255" in meta["preprocessing"]
    assert "--preprocess digits" in meta["preprocessing"]


def test_the_weights_are_those_eval_uses_unless_told(trained, tmp_path, forward, pixels):
    # cnn keeps last, best and averaged (ema) weights; the summary tested one of them.
    path = trained["cnn"]
    auto = export(path, tmp_path / "auto.onnx")
    assert auto["weights"] == checkpoint.load(path).weights
    x = pixels(5)
    for weights in ("last", "ema"):
        record = export(path, tmp_path / f"{weights}.onnx", "--weights", weights)
        assert record["weights"] == weights
        probabilities, _ = run_onnx(tmp_path / f"{weights}.onnx", x)
        expected = forward(path, x, weights)
        np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-5)
    last, _ = run_onnx(tmp_path / "last.onnx", x)
    ema, _ = run_onnx(tmp_path / "ema.onnx", x)
    assert np.abs(last - ema).max() > 1e-4  # really other weights


def test_the_format_follows_the_suffix_or_format(trained, tmp_path):
    record = export(trained["mlp"], tmp_path / "model.bin", "--format", "onnx")
    onnx.checker.check_model(str(tmp_path / "model.bin"), full_check=True)
    assert record["format"] == "onnx"


def test_the_docs_onnx_example_predicts_as_bptrain(trained, tmp_path, forward, pixels):
    out = tmp_path / "mlp.onnx"
    export(trained["mlp"], out)
    x = pixels(5, seed=9)
    np.save(tmp_path / "pixels.npy", x)
    example = Path(__file__).parents[2] / "examples" / "run_in_onnxruntime.py"
    done = subprocess.run(
        [sys.executable, str(example), str(out), str(tmp_path / "pixels.npy")],
        capture_output=True, text=True, env=subprocess_env(), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    ours = forward(trained["mlp"], x)
    assert [line["label"] for line in lines] == ours.argmax(axis=1).tolist()
    np.testing.assert_allclose([line["probabilities"] for line in lines], ours, atol=1e-5)
