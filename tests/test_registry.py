"""The registry: names to classes, signature-checked arguments, suggestions on typos."""

import pytest

from bptrain.errors import ConfigError
from bptrain.initializers import INITIALIZERS
from bptrain.layers import LAYERS, Affine, Relu
from bptrain.losses import LOSSES
from bptrain.optimizers import OPTIMIZERS, SGD


def test_builds_registered_classes_from_specs():
    layer = LAYERS.build({"type": "affine", "units": 100, "init": "he"})
    assert isinstance(layer, Affine) and layer.units == 100
    assert isinstance(LAYERS.build("relu"), Relu)
    assert isinstance(OPTIMIZERS.build({"type": "sgd", "lr": 0.1}), SGD)
    assert "softmax_with_loss" in LOSSES and "identity_with_mse" in LOSSES
    assert {"normal", "xavier", "he"} <= set(INITIALIZERS.names())


def test_unknown_name_lists_choices_and_suggests_the_closest():
    with pytest.raises(ConfigError) as info:
        LAYERS.build({"type": "relux"}, path="model.layers[2]")
    text = str(info.value)
    assert "model.layers[2].type" in text and "'relux'" in text
    assert "did you mean 'relu'?" in text
    for name in LAYERS.names():
        assert name in text


def test_unknown_argument_names_the_key_and_suggests():
    with pytest.raises(ConfigError) as info:
        LAYERS.build({"type": "affine", "unitz": 3}, path="model.layers[1]")
    assert "model.layers[1].unitz" in str(info.value)
    assert "did you mean 'units'?" in str(info.value)


def test_argument_types_are_checked_against_annotations():
    errors = LAYERS.check({"type": "affine", "units": "ten", "init": 3}, "m")
    paths = sorted(e.path for e in errors)
    assert paths == ["m.init", "m.units"]
    assert LAYERS.check({"type": "affine", "units": True}, "m")[0].path == "m.units"  # bool != int
    assert OPTIMIZERS.check({"type": "sgd", "lr": 1}, "o") == []  # an int is a fine float


def test_nested_initializer_errors_carry_the_full_path():
    with pytest.raises(ConfigError) as info:
        LAYERS.build({"type": "affine", "units": 3, "init": "hee"}, path="model.layers[1]")
    assert "model.layers[1].init.type" in str(info.value)
    assert "did you mean 'he'?" in str(info.value)
    with pytest.raises(ConfigError) as info:
        LAYERS.build({"type": "affine", "units": 3, "init": {"type": "normal", "std": -1}}, "L")
    assert "L.init.std" in str(info.value)


def test_missing_type_and_non_mapping_specs():
    with pytest.raises(ConfigError, match="has no 'type'"):
        LAYERS.build({"units": 3})
    with pytest.raises(ConfigError, match="expected a layer spec"):
        LAYERS.build(3)


def test_value_errors_from_constructors_name_the_path():
    with pytest.raises(ConfigError) as info:
        LAYERS.build({"type": "affine", "units": 0}, path="model.layers[0]")
    assert str(info.value).startswith("model.layers[0].units:")
    with pytest.raises(ConfigError, match=r"optimizer\.lr"):
        OPTIMIZERS.build({"type": "sgd", "lr": -0.1}, path="optimizer")
