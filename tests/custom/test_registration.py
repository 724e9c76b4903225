"""Own layers in the registry: file types resolved and imported at config time, the registry's
add/replace, and what a network of them records about its code."""

import hashlib

import numpy as np
import pytest

from bptrain.custom import registration
from bptrain.engine.layers import LAYERS, Layer, Relu
from bptrain.engine.network import Network
from bptrain.errors import ConfigError
from bptrain.registry import Registry
from bptrain.run.inputs import config_of
from cli_helpers import write_config
from own_layers_helpers import LAYER_RELU, own_config, write_layers


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_config_files_layer_path_is_relative_to_the_config_not_the_cwd(
    tmp_path, idx_folder, monkeypatch
):
    layers = write_layers(tmp_path / "project")
    config = write_config(tmp_path / "project" / "c.yaml", own_config(idx_folder))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    loaded = config_of(str(config))
    name = f"{layers}:Relu"
    assert loaded.config.model.layers[2] == {"type": name}
    registered = LAYERS.get(name)
    assert issubclass(registered, Layer) and registered.name == name
    assert registered.source == {"type": name, "file": "my_layers.py", "sha256": _sha(layers)}
    # --print-config's YAML holds the absolute path: read back from anywhere, the same file.
    assert f"{layers}:Relu" in loaded.config.to_yaml()


def test_set_and_stdin_paths_are_relative_to_the_current_folder(tmp_path, idx_folder, monkeypatch):
    layers = write_layers(tmp_path / "lib")
    monkeypatch.chdir(tmp_path)
    loaded = config_of("mlp", ["model.layers[2].type=lib/my_layers.py:Relu"])
    assert loaded.config.model.layers[2]["type"] == f"{layers}:Relu"
    text = "model:\n  layers: [flatten, {type: affine, units: 10}, lib/my_layers.py:Relu]\n"
    from_stdin = config_of("-", read_stdin=lambda: text)
    assert from_stdin.config.model.layers[2] == {"type": f"{layers}:Relu"}


def test_a_missing_file_names_the_config_line_and_where_paths_start(tmp_path, idx_folder):
    config = write_config(tmp_path / "c.yaml", own_config(idx_folder, "lib/nothere.py:Relu"))
    with pytest.raises(ConfigError) as info:
        config_of(str(config))
    text = str(info.value)
    assert f"{config}:" in text and "model.layers[2].type" in text
    assert f"{tmp_path / 'lib' / 'nothere.py'} does not exist" in text
    assert "relative to the file's folder" in text


def test_a_missing_class_lists_the_files_classes(tmp_path, idx_folder):
    write_layers(tmp_path)
    config = write_config(tmp_path / "c.yaml", own_config(idx_folder, "my_layers.py:Relux"))
    with pytest.raises(ConfigError, match=r"has no class 'Relux'; it defines: Relu"):
        config_of(str(config))


def test_an_edited_file_replaces_its_class_in_a_long_lived_process(tmp_path, idx_folder):
    layers = write_layers(tmp_path)
    config = write_config(tmp_path / "c.yaml", own_config(idx_folder))
    config_of(str(config))
    first = LAYERS.get(f"{layers}:Relu")
    layers.write_text(LAYER_RELU.replace("np.maximum(x, 0)", "np.maximum(x, 0) * 2"))
    config_of(str(config))
    second = LAYERS.get(f"{layers}:Relu")
    assert second is not first and second.source["sha256"] == _sha(layers)
    x = np.array([[-1.0, 3.0]], dtype=np.float32)
    assert second().forward(x).tolist() == [[0.0, 6.0]]
    assert first().forward(x).tolist() == [[0.0, 3.0]]


def test_add_or_replace_never_replaces_a_built_in_part():
    registry = Registry("layer")
    registry.register("relu")(type("BuiltIn", (), {}))
    with pytest.raises(ValueError, match="built in"):
        registry.add_or_replace("relu", type("Mine", (), {}))
    mine, again = type("Mine", (), {}), type("Again", (), {})
    registry.add_or_replace("x.py:Mine", mine)
    registry.add_or_replace("x.py:Mine", again)
    assert registry.get("x.py:Mine") is again and again.name == "x.py:Mine"
    assert registry.built_in("relu") and not registry.built_in("x.py:Mine")
    with pytest.raises(ValueError, match="registered twice"):  # register() stays strict
        registry.register("relu")(type("Other", (), {}))


def test_a_network_records_the_code_of_its_own_layers_once_per_type(tmp_path, idx_folder):
    layers = write_layers(tmp_path)
    config = own_config(idx_folder)
    config["model"]["layers"].insert(3, {"type": "my_layers.py:Relu"})  # twice in the stack
    imported = _sha(layers)
    loaded = config_of(str(write_config(tmp_path / "c.yaml", config)))
    layers.write_text(LAYER_RELU + "\n# edited while the run trains\n")
    network = Network.from_specs(loaded.config.model.layers, (1, 28, 28), num_classes=10)
    # The SHA-256 of the code that runs (taken at import), not of the file as it is at a save.
    assert registration.sources_of(network.layers) == (
        {"type": f"{layers}:Relu", "file": "my_layers.py", "sha256": imported},
    )
    built_in = Network.from_specs([{"type": "flatten"}, {"type": "relu"}], (1, 2, 5))
    assert registration.sources_of(built_in.layers) == ()
    assert type(built_in.layers[1]) is Relu
