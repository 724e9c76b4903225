"""The registry: names to classes, signature-checked arguments, suggestions on typos."""

import pytest

from bptrain.engine.initializers import INITIALIZERS
from bptrain.engine.layers import LAYERS, Affine, Relu
from bptrain.engine.losses import LOSSES
from bptrain.engine.optimizers import OPTIMIZERS, SGD
from bptrain.engine.schedules import SCHEDULES
from bptrain.errors import ConfigError
from bptrain.registry import did_you_mean


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


# --- suggestions: other case, other libraries' names --------------------------------------


@pytest.mark.parametrize(
    ("registry", "spec", "path", "guess"),
    [
        (OPTIMIZERS, {"type": "SGD", "lr": 0.1}, "o.type", "sgd"),
        (LAYERS, {"type": "Affine", "units": 3}, "o.type", "affine"),
        (LAYERS, {"type": "ReLU"}, "o.type", "relu"),
        (LAYERS, {"type": "linear", "units": 3}, "o.type", "affine"),
        (LAYERS, {"type": "Dense", "units": 3}, "o.type", "affine"),
        (LAYERS, {"type": "MaxPool2d"}, "o.type", "max_pool2d"),
        (LOSSES, "softmax", "o.type", "softmax_with_loss"),
        (LOSSES, "mse", "o.type", "identity_with_mse"),
        (LAYERS, {"type": "conv2d", "filters": 2, "size": 3}, "o.size", "kernel"),
        (LAYERS, {"type": "conv2d", "filters": 2, "kernel_size": 3}, "o.kernel_size", "kernel"),
        (LAYERS, {"type": "max_pool2d", "pool_size": 3}, "o.pool_size", "size"),
        (LAYERS, {"type": "dropout", "p": 0.2}, "o.p", "rate"),
        (LAYERS, {"type": "affine", "Units": 3}, "o.Units", "units"),
    ],
)
def test_typos_in_other_case_and_other_libraries_names_get_a_suggestion(
    registry, spec, path, guess
):
    errors = registry.check(spec, "o")
    assert [e.path for e in errors if e.path == path] == [path]
    (error,) = [e for e in errors if e.path == path]
    assert error.hint == f"did you mean '{guess}'?"


def test_aliases_are_suggested_never_accepted():
    with pytest.raises(ConfigError, match="unknown layer 'dense'"):
        LAYERS.build({"type": "dense", "units": 3})
    assert "dense" not in LAYERS and LAYERS.aliases["dense"] == "affine"


def test_did_you_mean_prefers_the_same_word_in_other_case_over_a_close_one():
    assert did_you_mean("SGD", ["sgd", "sga"]) == "sgd"
    assert did_you_mean("dense", ["affine", "dropout"], {"dense": "affine"}) == "affine"
    assert did_you_mean("qqq", ["affine"]) is None


# --- one name per part ---------------------------------------------------------------------


@pytest.mark.parametrize("registry", [LAYERS, LOSSES, OPTIMIZERS, SCHEDULES, INITIALIZERS])
def test_every_registered_class_is_named_by_its_registry_key(registry):
    for key in registry.names():
        assert registry.get(key).name == key
    assert not any(hasattr(registry.get(key), "registry_name") for key in registry.names())


def test_an_unregistered_subclass_is_named_after_itself_not_its_parent():
    class WrongAffine(Affine):
        pass

    assert Affine.name == "affine" and WrongAffine.name == "WrongAffine"
    assert Affine(units=3).name == "affine"  # instances read the class's name


def test_the_loss_layers_are_importable_with_the_layers_as_in_the_seed():
    from bptrain.engine import layers, losses

    assert layers.SoftmaxWithLoss is losses.SoftmaxWithLoss
    assert layers.SoftmaxWithLoss.name == "softmax_with_loss"
