"""Bad input, nothing lost: each mistake is one Error: line and its exit code, and no file (or
half of one) is left under --out; an existing file is never replaced without --overwrite."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from bptrain.engine.layers import LAYERS, Layer
from bptrain.export import onnx_graph
from cli_helpers import (
    assert_error,
    invoke,
    mounted_tmpfs,
    records,
    small_config,
    write_config,
)

onnx = pytest.importorskip("onnx", reason="the export extra (onnx) is not installed")

FORMAT_V2 = Path(__file__).parents[1] / "run" / "data" / "format-v2"


def leftovers(folder: Path) -> list[str]:
    """Files the writer may have left: its hidden temporaries included."""
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("suffix", [".onnx", ".safetensors"])
def test_an_existing_out_is_kept_without_overwrite(trained, tmp_path, suffix):
    out = tmp_path / f"model{suffix}"
    out.write_bytes(b"someone's file")
    assert_error(invoke("export", trained["mlp"], "--out", out), 4, str(out), "--overwrite")
    assert out.read_bytes() == b"someone's file"
    assert leftovers(tmp_path) == [out.name]
    result = invoke("export", trained["mlp"], "--out", out, "--overwrite")
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes() != b"someone's file"


@pytest.mark.parametrize("kind", ["folder", "symlink", "fifo"])
def test_an_out_that_is_not_a_regular_file_is_refused(trained, tmp_path, kind):
    out, target = tmp_path / "model.onnx", tmp_path / "target"
    target.write_bytes(b"target")
    {"folder": out.mkdir, "symlink": lambda: out.symlink_to(target),
     "fifo": lambda: os.mkfifo(out)}[kind]()  # fmt: skip
    before = os.lstat(out)
    result = invoke("export", trained["mlp"], "--out", out, "--overwrite")
    assert_error(result, 4, str(out), "not a regular file")
    after = os.lstat(out)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert target.read_bytes() == b"target"


def test_an_unwritable_folder_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    # The checkpoint does not even exist: the destination is judged first.
    result = invoke("export", tmp_path / "none.npz", "--out", blocker / "m.onnx")
    assert_error(result, 4, "cannot write --out", str(blocker / "m.onnx"))


def test_a_read_only_folder_is_refused(trained, tmp_path):
    with mounted_tmpfs(tmp_path / "ro", "size=1m,ro") as ro:
        result = invoke("export", trained["mlp"], "--out", ro / "m.safetensors")
        assert_error(result, 4, "cannot write --out", str(ro / "m.safetensors"), "Read-only")
        assert leftovers(ro) == []


def test_a_damaged_checkpoint_is_exit_4_and_writes_nothing(trained, tmp_path):
    damaged = tmp_path / "damaged.npz"
    data = trained["mlp"].read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for name in ("m.onnx", "m.safetensors"):
        assert_error(invoke("export", damaged, "--out", out_dir / name), 4, str(damaged))
    assert leftovers(out_dir) == []


def test_an_edited_checkpoint_is_exit_4_and_writes_nothing(trained, tmp_path):
    with np.load(trained["mlp"]) as npz:
        entries = {name: npz[name] for name in npz.files}
    meta = json.loads(entries["__meta__"].tobytes())
    meta["class_names"][0] = "zero"  # edited by hand: the digest no longer matches
    entries["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    edited = tmp_path / "edited.npz"
    with open(edited, "wb") as handle:
        np.savez(handle, **entries)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for name in ("m.onnx", "m.safetensors"):
        assert_error(invoke("export", edited, "--out", out_dir / name), 4, str(edited))
    assert leftovers(out_dir) == []


def test_an_unknown_suffix_without_format_is_exit_2(trained, tmp_path):
    result = invoke("export", trained["mlp"], "--out", tmp_path / "model.bin")
    assert_error(result, 2, "model.bin", "--format onnx|safetensors")
    assert leftovers(tmp_path) == []


def test_an_unfinished_checkpoint_exports_with_a_warning(tmp_path):
    data = shutil.copytree(FORMAT_V2, tmp_path / "v2")
    result = invoke("export", data / "midway.npz", "--out", tmp_path / "midway.onnx")
    assert result.exit_code == 0, result.stderr
    assert "unfinished run" in result.stderr and "--resume" in result.stderr
    (record,) = records(result.stdout)
    assert record["complete"] is False and record["weights"] == "last"
    assert record["verified"]["max_abs_diff"] <= 1e-5
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "midway.onnx")).metadata_props}
    assert meta["complete"] == "false" and "test_accuracy" not in meta
    assert json.loads(meta["input_shape"]) == ["N", 1, 6, 6]  # the network's own input shape


class Square(Layer):
    """x * x: a layer bptrain can train but that no exporter has a form for."""

    name = "square"

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        self.x = x
        return x * x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return 2 * self.x * dout


@pytest.fixture
def with_square(monkeypatch):
    """`square` in the layer registry for this test only (no real layer lacks an export)."""
    monkeypatch.setitem(LAYERS._classes, "square", Square)
    monkeypatch.setitem(LAYERS._key_aliases, "square", {})


def test_a_layer_with_no_onnx_or_torch_form_is_exit_2_naming_it(with_square, tmp_path, idx_folder):
    config = small_config(idx_folder, epochs=1)
    config["model"]["layers"].insert(2, {"type": "square"})
    out = tmp_path / "sq.npz"
    trained = invoke("train", write_config(tmp_path / "sq.yaml", config), "--out", out)
    assert trained.exit_code == 0, trained.stderr
    result = invoke("export", out, "--out", tmp_path / "sq.onnx")
    assert_error(result, 2, "layer 2 (square)", "no ONNX form", "model.layers[2]")
    result = invoke("export", out, "--out", tmp_path / "sq.safetensors")
    assert_error(result, 2, "layer 2 (square)", "no PyTorch counterpart")
    assert leftovers(tmp_path) == ["sq.npz", "sq.yaml"]


def test_a_graph_that_disagrees_with_bptrain_is_exit_1_and_never_published(
    trained, tmp_path, monkeypatch
):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"the old file")
    # An exporter bug, made on purpose: ReLU written as a sigmoid. The graph is valid ONNX, so
    # only running it beside bptrain can catch it.
    monkeypatch.setitem(onnx_graph.SIMPLE, "relu", "Sigmoid")
    result = invoke("export", trained["mlp"], "--out", out, "--overwrite")
    assert_error(result, 1, "ONNX Runtime disagrees with bptrain", "not written")
    assert out.read_bytes() == b"the old file"
    assert leftovers(tmp_path) == ["m.onnx"]


def test_without_onnxruntime_the_file_is_written_unverified(trained, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime fails
    result = invoke("export", trained["mlp"], "--out", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.stderr
    (record,) = records(result.stdout)
    assert record["verified"] is None
    assert "onnxruntime is not installed" in result.stderr
    onnx.checker.check_model(str(tmp_path / "m.onnx"), full_check=True)


@pytest.mark.parametrize(("module", "suffix"), [("onnx", ".onnx"), ("safetensors", ".st")])
def test_a_missing_engine_names_the_export_extra(trained, tmp_path, monkeypatch, module, suffix):
    monkeypatch.setitem(sys.modules, module, None)
    fmt = "onnx" if module == "onnx" else "safetensors"
    result = invoke("export", trained["mlp"], "--out", tmp_path / f"m{suffix}", "--format", fmt)
    assert_error(result, 2, "pip install 'bptrain[export]'")
    assert leftovers(tmp_path) == []


def test_a_graph_the_checker_rejects_is_exit_1_and_never_published(trained, tmp_path, monkeypatch):
    monkeypatch.setitem(onnx_graph.SIMPLE, "relu", "Rectify")  # no such operator in opset 13
    result = invoke("export", trained["mlp"], "--out", tmp_path / "m.onnx")
    assert_error(result, 1, "onnx.checker rejects the exported graph", "Rectify")
    assert leftovers(tmp_path) == []


def test_the_checkpoint_itself_is_never_the_out(trained, tmp_path):
    model = tmp_path / "m.npz"
    model.write_bytes(trained["mlp"].read_bytes())
    result = invoke("export", model, "--out", model, "--format", "onnx", "--overwrite")
    assert_error(result, 4, "is the checkpoint being exported")
    assert model.read_bytes() == trained["mlp"].read_bytes()
