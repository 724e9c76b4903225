"""Training with your own layers: a config naming `my_layers.py:Relu` works in every command,
the checkpoint records the file's name and SHA-256, and a checkpoint alone never makes bptrain
import anything (`--layers` is the user's say-so, checked against the SHA-256 first)."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bptrain.run import checkpoint
from cli_helpers import (
    assert_error,
    invoke,
    records,
    small_config,
    subprocess_env,
    without_timing,
    write_config,
)
from own_layers_helpers import (
    BOOK_LAYERS,
    LAYER_RELU,
    MARKER,
    book_stack,
    own_config,
    write_layers,
)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _train(tmp_path: Path, data: Path, *args, name: str = "run.npz", **train) -> Path:
    """A run whose ReLU comes from code/my_layers.py (named relative to code/c.yaml)."""
    if not (tmp_path / "code" / "my_layers.py").exists():
        write_layers(tmp_path / "code")
    config = write_config(tmp_path / "code" / "c.yaml", own_config(data, **train))
    out = tmp_path / name
    result = invoke("train", config, "--out", out, *args)
    assert result.exit_code == 0, result.stderr
    return out


def test_a_config_naming_a_file_trains_gradchecks_and_is_summarized_and_drawn(tmp_path, idx_folder):
    out = _train(tmp_path, idx_folder, epochs=1)
    layers, config = tmp_path / "code" / "my_layers.py", tmp_path / "code" / "c.yaml"
    name = f"{layers}:Relu"
    meta = checkpoint.load(out).meta
    assert meta["config"]["model"]["layers"][2] == {"type": name}
    assert meta["layer_sources"] == [{"type": name, "file": "my_layers.py", "sha256": _sha(layers)}]

    (check,) = records(invoke("gradcheck", config).stdout)
    assert check["ok"] and {p["name"] for p in check["parameters"]} >= {"1.W", "3.W", "input"}

    summary = records(invoke("summary", config, "--json").stdout)[0]
    assert [row["type"] for row in summary["layers"]] == ["flatten", "affine", name, "affine"]
    dot = invoke("graph", config, "--format", "dot")
    assert dot.exit_code == 0 and '"layer2"' in dot.stdout and "ReLU" in dot.stdout


def test_a_file_that_does_not_import_is_exit_2_at_its_line(tmp_path, idx_folder):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "my_layers.py").write_text("import numpy as np\n\nx = undefined_name\n")
    config = write_config(tmp_path / "code" / "c.yaml", own_config(idx_folder))
    result = invoke("train", config, "--out", tmp_path / "r.npz")
    assert_error(result, 2, "my_layers.py:3: importing it raised NameError", "model.layers[2]")
    assert not (tmp_path / "r.npz").exists()


def test_checkpoint_commands_import_the_file_only_from_layers(tmp_path, idx_folder):
    out = _train(tmp_path, idx_folder, epochs=1)
    trained = records(invoke("eval", out, "--layers", tmp_path / "code" / "my_layers.py").stdout)
    # The user's copy may live elsewhere now: the name and the SHA-256 are what must match.
    copy = tmp_path / "moved" / "my_layers.py"
    copy.parent.mkdir()
    shutil.move(tmp_path / "code" / "my_layers.py", copy)
    for command in (["eval", out], ["summary", out, "--json"], ["graph", out, "--format", "dot"]):
        assert_error(invoke(*command), 2, "my_layers.py", "add --layers my_layers.py")
        assert invoke(*command, "--layers", copy).exit_code == 0
    again = records(invoke("eval", out, "--layers", copy).stdout)
    assert again[0]["accuracy"] == trained[0]["accuracy"] and again[0]["loss"] == trained[0]["loss"]
    summary = records(invoke("summary", out, "--json", "--layers", copy).stdout)[0]
    assert summary["layers"][2]["type"] == f"{tmp_path / 'code' / 'my_layers.py'}:Relu"


def test_a_changed_file_is_refused_with_both_hashes(tmp_path, idx_folder):
    out = _train(tmp_path, idx_folder, epochs=1)
    layers = tmp_path / "code" / "my_layers.py"
    recorded = _sha(layers)
    layers.write_text(LAYER_RELU.replace("np.maximum(x, 0)", "np.maximum(x, 0.0)"))
    now = _sha(layers)
    result = invoke("eval", out, "--layers", layers)
    assert_error(
        result, 4, f"my_layers.py changed since checkpoint {out} was trained",
        f"sha256 {recorded[:12]}… recorded, {now[:12]}… now", "restore the file, or train again",
    )  # fmt: skip
    # Another file of the same name beside the right one: the right one is taken.
    right = write_layers(tmp_path / "right")
    assert invoke("eval", out, "--layers", layers, "--layers", right).exit_code == 0


def test_resume_with_layers_ends_like_an_uninterrupted_run(tmp_path, idx_folder):
    full = _train(tmp_path, idx_folder, name="full.npz")
    part = _train(tmp_path, idx_folder, "--set", "train.epochs=1", name="part.npz")
    layers = tmp_path / "code" / "my_layers.py"
    assert_error(invoke("train", "--resume", part, "--set", "train.epochs=3"), 2, "--layers")
    rest = invoke("train", "--resume", part, "--set", "train.epochs=3", "--layers", layers)
    assert rest.exit_code == 0, rest.stderr
    a, b = checkpoint.load(full), checkpoint.load(part)
    assert b.epochs == 3 and b.meta["layer_sources"] == a.meta["layer_sources"]
    for group in ("param", "optim"):
        assert a.group(group).keys() == b.group(group).keys()
        for key, value in a.group(group).items():
            assert np.array_equal(value, b.group(group)[key]), (group, key)
    assert without_timing(b.history) == without_timing(a.history)


def test_layers_for_a_new_run_is_a_usage_error(tmp_path, idx_folder):
    layers = write_layers(tmp_path / "code")
    config = write_config(tmp_path / "code" / "c.yaml", own_config(idx_folder))
    result = invoke("train", config, "--layers", layers, "--out", tmp_path / "r.npz")
    assert_error(result, 2, "--layers is for --resume")


def test_layers_a_checkpoint_does_not_use_are_not_imported(tmp_path, idx_folder, config_file):
    out = tmp_path / "plain.npz"
    assert invoke("train", config_file, "--set", "train.epochs=1", "--out", out).exit_code == 0
    layers = write_layers(tmp_path / "code", "unused.py", marker=True)
    result = invoke("eval", out, "--layers", layers)
    assert result.exit_code == 0
    assert f"--layers {layers}: checkpoint {out} uses no layers from it" in result.stderr
    assert not (tmp_path / "code" / MARKER).exists()
    assert "layer_sources" not in checkpoint.load(out).meta  # no own layers: no new key


def _edit(path: Path, edit) -> None:
    """Change a checkpoint's metadata and seal it again (the digest is no signature)."""
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("__meta__").tobytes())
    edit(meta)
    meta["digest"] = checkpoint.digest(meta, arrays)
    np.savez(path, **arrays, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8))


def test_an_edited_checkpoint_naming_an_unrecorded_file_is_exit_4(tmp_path, idx_folder):
    out = _train(tmp_path, idx_folder, epochs=1)
    other = write_layers(tmp_path / "other", "evil.py", marker=True)

    def point_at_another_file(meta):
        meta["config"]["model"]["layers"][2]["type"] = f"{other}:Relu"

    _edit(out, point_at_another_file)
    for args in (["eval", out], ["eval", out, "--layers", other]):
        assert_error(invoke(*args), 4, f"names '{other}:Relu'", "was edited")
    assert not (tmp_path / "other" / MARKER).exists()


@pytest.mark.parametrize(
    "sources",
    [
        [{"type": "x.py:Relu", "file": "y.py", "sha256": "0" * 64}],  # not the type's file
        [{"type": "x.py:Relu", "file": "x.py", "sha256": "abc"}],  # not a SHA-256
        [{"type": "x.py:Relu", "file": "x.py", "sha256": "0" * 64, "code": "print()"}],
        [{"type": "p", "entry_point": "m:C", "distribution": "d"}],  # no version
        "x.py",
    ],
)
def test_a_malformed_code_record_is_exit_4(tmp_path, idx_folder, sources):
    out = _train(tmp_path, idx_folder, epochs=1)
    _edit(out, lambda meta: meta.update(layer_sources=sources))
    assert_error(invoke("eval", out), 4, "layer_sources")


# --- a real process: the file leaves a marker when imported ----------------------------------


def _bptrain(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bptrain", *map(str, args)],
        capture_output=True, text=True, timeout=300, env=env or subprocess_env(),
    )  # fmt: skip


def _error_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_a_checkpoint_alone_never_imports_the_file_it_names(tmp_path, idx_folder):
    layers = write_layers(tmp_path / "code", marker=True)
    marker = tmp_path / "code" / MARKER
    config = write_config(tmp_path / "code" / "c.yaml", own_config(idx_folder, epochs=1))
    out = tmp_path / "run.npz"
    assert _bptrain("train", config, "--out", out).returncode == 0
    assert marker.exists()  # training imported it: the config names it
    marker.unlink()
    refusals = [
        ["eval", out],
        ["predict", out, idx_folder / "t10k-images-idx3-ubyte"],
        ["graph", out],
        ["summary", out],
        ["serve", out, "--port", "0"],
        ["train", "--resume", out, "--set", "train.epochs=2"],
    ]
    for args in refusals:
        done = _bptrain(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "add --layers my_layers.py" in _error_line(done)
        assert not marker.exists(), args
    done = _bptrain("eval", out, "--layers", layers)
    assert done.returncode == 0, done.stderr
    assert records(done.stdout)[0]["event"] == "eval" and marker.exists()
    marker.unlink()
    layers.write_text(layers.read_text() + "\n# edited\n")
    for args in refusals:
        done = _bptrain(*args, "--layers", layers)
        assert done.returncode == 4, (args, done.stderr)
        assert "my_layers.py changed since checkpoint" in _error_line(done)
        assert not marker.exists(), args


# --- an installed package's layers: the entry-point group bptrain.layers -----------------------


PLUGIN_INIT = LAYER_RELU.replace("class Relu(Layer)", "class PluginRelu(Layer)")
ENTRY_POINTS = """\
[bptrain.layers]
plugin_relu = mypkg:PluginRelu
relu = mypkg.shadow:Relu
broken = mypkg.broken:Thing
other = mypkg.other:Thing
"""


def _install(site: Path, version: str = "0.1") -> None:
    """A package as pip leaves it in site-packages: its module and its .dist-info."""
    package = site / "mypkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(PLUGIN_INIT)
    # Importing these leaves a mark (or fails): only a named entry point may be loaded.
    for name in ("shadow", "other"):
        (package / f"{name}.py").write_text(f"open({str(site / name)!r}, 'w').close()\n")
    (package / "broken.py").write_text("import numpy_that_is_not_installed\n")
    info = site / f"mypkg-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: mypkg\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)


def _env_with(site: Path | None) -> dict:
    env = subprocess_env()
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return env


def test_an_installed_packages_entry_point_is_a_layer_type(tmp_path, idx_folder):
    site = tmp_path / "site"
    _install(site)
    env = _env_with(site)
    config = write_config(tmp_path / "c.yaml", own_config(idx_folder, "plugin_relu", epochs=1))
    out = tmp_path / "run.npz"
    done = _bptrain("train", config, "--out", out, env=env)
    assert done.returncode == 0, done.stderr
    assert checkpoint.load(out).meta["layer_sources"] == [
        {"type": "plugin_relu", "entry_point": "mypkg:PluginRelu", "distribution": "mypkg",
         "version": "0.1"}
    ]  # fmt: skip
    assert not (site / "other").exists()  # the entry points no config names stay unloaded
    done = _bptrain("gradcheck", config, env=env)
    assert done.returncode == 0 and records(done.stdout)[0]["ok"], done.stderr
    assert _bptrain("eval", out, env=env).returncode == 0  # installed code: no --layers needed
    # Uninstalled, the checkpoint says what to install.
    done = _bptrain("eval", out, env=_env_with(None))
    assert done.returncode == 2
    assert "pip install 'mypkg==0.1'" in _error_line(done)


def test_a_built_in_name_wins_and_a_broken_plugin_is_one_error(tmp_path, idx_folder):
    site = tmp_path / "site"
    _install(site)
    env = _env_with(site)
    plain = write_config(tmp_path / "plain.yaml", own_config(idx_folder, "relu", epochs=1))
    assert _bptrain("train", plain, "--dry-run", env=env).returncode == 0
    assert not (site / "shadow").exists()  # mypkg's `relu` is never loaded
    broken = write_config(tmp_path / "broken.yaml", own_config(idx_folder, "broken", epochs=1))
    done = _bptrain("train", broken, "--dry-run", env=env)
    assert done.returncode == 2
    line = _error_line(done)
    assert "broken = mypkg.broken:Thing (bptrain.layers) of mypkg 0.1 failed to load" in line
    assert "ModuleNotFoundError" in line and "model.layers[2]" in line


def test_another_installed_version_is_warned_about(tmp_path, idx_folder):
    site = tmp_path / "site"
    _install(site)
    config = write_config(tmp_path / "c.yaml", own_config(idx_folder, "plugin_relu", epochs=1))
    out = tmp_path / "run.npz"
    assert _bptrain("train", config, "--out", out, env=_env_with(site)).returncode == 0
    newer = tmp_path / "newer"
    _install(newer, "0.2")
    done = _bptrain("eval", out, env=_env_with(newer))
    assert done.returncode == 0, done.stderr
    assert "from mypkg 0.1 (mypkg:PluginRelu); installed now: mypkg 0.2" in done.stderr


# --- the book's way: a network of the learner's own classes --------------------------------


def test_the_books_classes_train_to_the_built_in_weights_bit_for_bit(tmp_path, idx_folder):
    (tmp_path / "my_layers.py").write_text(BOOK_LAYERS)
    # The plain NumPy bodies on both sides (no compiled loops; an MLP has no fused runs).
    env = {**subprocess_env(), "BPTRAIN_KERNELS": "numpy"}
    out = {}
    for side, prefix in (("built_in", ""), ("book", "my_layers.py:")):
        config = small_config(idx_folder, epochs=2)
        config["model"]["layers"] = book_stack(prefix)
        path = write_config(tmp_path / f"{side}.yaml", config)
        out[side] = tmp_path / f"{side}.npz"
        done = _bptrain("train", path, "--out", out[side], env=env)
        assert done.returncode == 0, done.stderr
    built_in, book = checkpoint.load(out["built_in"]), checkpoint.load(out["book"])
    assert built_in.meta["kernels"] == book.meta["kernels"] == "numpy"
    assert [s["type"].rsplit("/", 1)[-1] for s in book.meta["layer_sources"]] == [
        "my_layers.py:Affine", "my_layers.py:Sigmoid", "my_layers.py:Relu",
    ]  # fmt: skip
    assert built_in.group("param").keys() == book.group("param").keys()
    for name, value in built_in.group("param").items():
        assert np.array_equal(value, book.group("param")[name]), name
    assert without_timing(built_in.history) == without_timing(book.history)
    # The same check in-process: gradcheck the book's network (exit 0 means it passed).
    config = small_config(idx_folder)
    config["model"]["layers"] = book_stack("my_layers.py:")
    check = invoke("gradcheck", write_config(tmp_path / "check.yaml", config))
    assert check.exit_code == 0, check.stderr


def test_export_of_own_layers_needs_layers_then_names_the_layer(tmp_path, idx_folder):
    pytest.importorskip("onnx", reason="the export extra (onnx) is not installed")
    out = _train(tmp_path, idx_folder)
    layers = tmp_path / "code" / "my_layers.py"
    target = tmp_path / "model.onnx"
    assert_error(invoke("export", out, "--out", target), 2, "--layers my_layers.py")
    result = invoke("export", out, "--out", target, "--layers", layers)
    assert_error(result, 2, "layer 2 (my_layers.py:Relu) has no ONNX form")
    assert not target.exists()
