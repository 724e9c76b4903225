"""config.py on its own: YAML safety (alias bombs, tags, merges), cross-key rules, data.dir,
--set locations, and the parts it is checked against."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import yaml

from bptrain.config import MAX_YAML_VALUES, load_config, parse_yaml, validate
from bptrain.errors import ConfigError, ConfigErrors
from bptrain.registry import Parts, Registry
from bptrain.run.parts import PARTS

MODEL = "model: {layers: [{type: flatten}, {type: affine, units: 10}]}\n"


def from_stdin(text: str, *overrides: str):
    return load_config("-", overrides, parts=PARTS, stdin_text=lambda: text)


def messages(info: pytest.ExceptionInfo) -> list[str]:
    error = info.value
    return [str(e) for e in error.errors] if isinstance(error, ConfigErrors) else [str(error)]


def bomb(levels: int = 9) -> str:
    """The outside test's "billion laughs": each level lists the previous one ten times."""
    lines = ["a0: &a0 [" + ", ".join(['"x"'] * 10) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


# --- alias bombs ---------------------------------------------------------------------------


def test_an_alias_bomb_is_refused_from_a_file_stdin_and_set_without_building_it(tmp_path):
    # In a child process with a timeout: if the budget ever breaks, the test fails instead of
    # hanging the suite while the expansion eats gigabytes.
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb())
    flow = "{" + bomb().strip().replace("\n", ", ") + "}"
    code = textwrap.dedent(f"""
        from bptrain.config import load_config
        from bptrain.errors import ConfigError
        from bptrain.run.parts import PARTS
        text = open({str(path)!r}).read()
        calls = [
            lambda: load_config({str(path)!r}, parts=PARTS),
            lambda: load_config("-", parts=PARTS, stdin_text=lambda: text),
            lambda: load_config("mlp", ["optimizer.lr=" + {flow!r}], parts=PARTS),
        ]
        for call in calls:
            try:
                call()
            except ConfigError as error:
                print(error)
    """)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    lines = done.stdout.splitlines()
    expected = f"config uses YAML aliases that expand to more than {MAX_YAML_VALUES} values"
    assert len(lines) == 3 and all(expected in line for line in lines), done.stdout
    assert lines[0].startswith(f"{path}: ") and lines[1].startswith("<stdin>: ")
    assert lines[2].startswith("--set optimizer.lr: ")


def test_merge_key_bombs_are_refused_too():
    text = "m0: &m0 {" + ", ".join(f"k{j}: {j}" for j in range(10)) + "}\n"
    text += "".join(
        f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 10)}], x: [*m{i - 1}, *m{i - 1}]}}\n"
        for i in range(1, 12)
    )
    with pytest.raises(ConfigError, match="expand to more than"):
        parse_yaml(text, "m.yaml")


def test_modest_aliases_still_work_and_each_path_keeps_its_line():
    data, lines = parse_yaml(bomb(levels=3), "ok.yaml")  # 10 * 10 * 10 values: fine
    assert len(data["a2"]) == 10 and data["a2"][9][9] == ["x"] * 10
    # an aliased value points at the line it was written on
    assert lines["a2"] == 3 and lines["a2[3]"] == 2 and lines["a2[3][4][5]"] == 1


def test_merge_keys_let_written_keys_override_merged_ones():
    # Before, the override was refused as a "duplicate key". Among merged mappings the first
    # wins, as the YAML merge spec says (PyYAML 6 lets the last one win).
    text = textwrap.dedent("""
        model:
          layers:
            - {type: flatten}
            - &hidden {type: affine, units: 32, init: xavier}
            - {type: relu}
            - {<<: *hidden, units: 10}
        optimizer: {<<: [{type: sgd, lr: 0.5}, {type: adam, lr: 0.1}], lr: 0.2}
    """)
    config = from_stdin(text).config
    assert config.model.layers[3] == {"type": "affine", "units": 10, "init": "xavier"}
    assert config.optimizer["type"] == "sgd" and config.optimizer["lr"] == 0.2


def test_a_real_duplicate_key_is_still_an_error():
    with pytest.raises(ConfigError, match=r"^c.yaml:3: train.epochs: duplicate key 'epochs'"):
        parse_yaml("train:\n  epochs: 1\n  epochs: 2\n", "c.yaml")


# --- tags ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "tag"),
    [
        ("model:\n  layers:\n    - !!python/object/apply:os.system {type: relu}\n", 3, "!!python"),
        ("seed: !!binary aGVsbG8=\n", 1, "!!binary"),
        ("train:\n  epochs: !custom 3\n", 2, "!custom"),
        ("!!python/name:os.system : 1\n", 1, "!!python/name"),
    ],
)
def test_explicit_yaml_tags_are_refused_naming_file_and_line(text, line, tag):
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "c.yaml")
    assert str(info.value).startswith(f"c.yaml:{line}: ")
    assert "YAML tags are not supported" in str(info.value) and tag in str(info.value)


def test_standard_tags_and_what_yaml_resolves_itself_are_fine():
    data, _ = parse_yaml("a: !!str 5\nb: !!float 1\nc: 1e-3\nd: null\ne: [!!int '3']\n", "c")
    assert data == {"a": "5", "b": 1.0, "c": 0.001, "d": None, "e": [3]}


def test_a_tag_in_a_set_value_is_refused():
    with pytest.raises(ConfigError, match=r"^--set optimizer: YAML tags are not supported"):
        load_config("mlp", ["optimizer=!!python/object:os.system {}"], parts=PARTS)


# --- settings that cannot work together ----------------------------------------------------


@pytest.mark.parametrize(
    ("train", "path"),
    [
        ("{restore_best: true}", "train.restore_best"),
        ("{early_stopping: 2}", "train.early_stopping"),
    ],
)
def test_best_weights_and_early_stopping_need_a_validation_set(train, path):
    text = MODEL + f"data: {{validation: 0}}\ntrain: {train}\n"
    with pytest.raises(ConfigErrors) as info:
        from_stdin(text)
    assert messages(info) == [
        f"<stdin>:3: {path}: needs a validation set (data.validation > 0) "
        "(hold out some training samples, e.g. data.validation: 5000)"
    ]
    from_stdin(MODEL + f"data: {{validation: 10}}\ntrain: {train}\n")  # with one: fine
    from_stdin(MODEL + "data: {validation: 0}\n")  # neither used: fine


def test_a_warmup_as_long_as_the_run_is_an_error_at_its_key():
    text = MODEL + "train:\n  epochs: 18\n  schedule: {type: cosine, warmup: 100}\n"
    with pytest.raises(ConfigErrors) as info:
        from_stdin(text)
    (message,) = messages(info)
    assert message.startswith("<stdin>:4: train.schedule.warmup: a warm-up of 100 epochs")
    with pytest.raises(ConfigErrors, match=r"^--set train\.schedule\.warmup: "):
        from_stdin(MODEL, "train.epochs=2", "train.schedule={type: step, step_size: 1, warmup: 2}")
    config = from_stdin(MODEL, "train.epochs=2", "train.schedule={type: cosine, warmup: 1.5}")
    assert config.config.train.schedule["warmup"] == 1.5


# --- data.dir ------------------------------------------------------------------------------


def test_a_relative_data_dir_in_a_file_is_relative_to_the_file(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "c.yaml"
    path.write_text(MODEL + "data: {dir: ../shared/data}\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # not the config's folder
    config = load_config(str(path), parts=PARTS).config
    assert config.data.dir == str((tmp_path / "shared" / "data").resolve())
    # --print-config's output reads back to the same folder from anywhere
    again = from_stdin(config.to_yaml()).config
    assert again == config


def test_data_dir_from_set_or_stdin_stays_relative_to_the_current_folder(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(MODEL + "data: {dir: here}\n")
    assert load_config(str(path), ["data.dir=rel/x"], parts=PARTS).config.data.dir == "rel/x"
    assert from_stdin(MODEL + "data: {dir: rel/y}\n").config.data.dir == "rel/y"
    path.write_text(MODEL + "data: {dir: ~/mnist}\n")  # the data layer expands ~
    assert load_config(str(path), parts=PARTS).config.data.dir == "~/mnist"
    path.write_text(MODEL + f"data: {{dir: {tmp_path}}}\n")
    assert load_config(str(path), parts=PARTS).config.data.dir == str(tmp_path)


# --- where --set errors point --------------------------------------------------------------


def test_a_set_that_changes_a_layer_type_owns_the_errors_inside_that_layer():
    with pytest.raises(ConfigErrors) as info:
        load_config("mlp", ["model.layers[0].type=conv2d"], parts=PARTS)
    assert "--set model.layers[0].filters: missing required key for layer 'conv2d'" in messages(
        info
    )
    # errors elsewhere in the file keep their file:line
    with pytest.raises(ConfigErrors) as info:
        load_config("mlp", ["model.layers[0].type=conv2d", "model.layers[1].unitz=3"], parts=PARTS)
    assert any(m.startswith("--set model.layers[1].unitz") for m in messages(info))


def test_a_file_error_still_points_at_its_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  layers:\n    - {type: conv2d}\n")
    with pytest.raises(ConfigErrors) as info:
        load_config(str(path), parts=PARTS)
    assert messages(info)[0].startswith(f"{path}:3: model.layers[0].filters: missing required")


# --- parts ---------------------------------------------------------------------------------


def test_config_imports_no_registry():
    code = (
        "import sys, bptrain.config\n"
        "print(sorted(m for m in sys.modules if m.startswith('bptrain')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    config_modules = ["config", "config.load", "config.overrides", "config.schema", "config.yaml"]
    expected = ["bptrain", *(f"bptrain.{m}" for m in config_modules)]
    assert done.stdout.strip() == str([*expected, "bptrain.errors", "bptrain.registry"])


def test_the_parts_passed_in_are_what_a_config_may_name():
    only_flatten = Registry("layer")
    only_flatten.register("flatten")(type("Flatten", (), {}))
    parts = Parts(
        layers=only_flatten,
        losses=PARTS.losses,
        optimizers=PARTS.optimizers,
        schedules=PARTS.schedules,
        datasets=("digits",),
    )
    raw = yaml.safe_load(MODEL + "data: {dataset: digits}\n")
    errors = validate(raw, parts=parts)
    assert [e.path for e in errors] == ["model.layers[1].type"]
    assert [e.path for e in validate(raw, parts=PARTS)] == ["data.dataset"]
    with pytest.raises(TypeError, match="parts"):
        load_config("mlp")  # no hidden default


def test_dataset_and_preset_typos_get_case_insensitive_suggestions():
    with pytest.raises(ConfigErrors, match=r"did you mean 'mnist'\?"):
        from_stdin(MODEL + "data: {dataset: MNIST}\n")
    with pytest.raises(ConfigErrors, match=r"did you mean 'fashion-mnist'\?"):
        from_stdin(MODEL + "data: {dataset: fmnist}\n")
    with pytest.raises(ConfigError, match=r"did you mean 'mlp'\?"):
        load_config("MLP", parts=PARTS)
    with pytest.raises(ConfigErrors, match=r"did you mean 'early_stopping'\?"):
        from_stdin(MODEL + "train: {patience: 3}\n")


@pytest.mark.parametrize("name", ["mlp", "mlp-deep", "cnn", "cnn-deep"])
def test_presets_print_and_read_back_identically(name):
    config = load_config(name, parts=PARTS).config
    assert from_stdin(config.to_yaml()).config == config


# --- for_dataset: settings one dataset needs ---------------------------------------------

PER_DATASET = (
    MODEL
    + "train: {epochs: 4}\n"
    + "for_dataset:\n"
    + "  fashion-mnist: {train.epochs: 9, 'model.layers[1].units': 12}\n"
    + "  mnist: {train.batch_size: 50}\n"
)


def test_for_dataset_applies_the_settings_of_the_run_s_dataset_only():
    mnist = from_stdin(PER_DATASET).config
    assert (mnist.train.epochs, mnist.train.batch_size) == (4, 50)
    assert mnist.model.layers[1]["units"] == 10
    fashion = from_stdin(PER_DATASET, "data.dataset=fashion-mnist").config
    assert (fashion.train.epochs, fashion.train.batch_size) == (9, 100)
    assert fashion.model.layers[1]["units"] == 12
    # the resolved config is that dataset's own: it prints and reads back without for_dataset
    assert "for_dataset" not in fashion.to_yaml()
    assert from_stdin(fashion.to_yaml()).config == fashion


def test_set_has_the_last_word_over_for_dataset():
    config = from_stdin(PER_DATASET, "data.dataset=fashion-mnist", "train.epochs=2").config
    assert config.train.epochs == 2
    assert config.model.layers[1]["units"] == 12  # the entries --set did not touch still apply
    # a --set of a whole section wins over an entry inside it
    whole = from_stdin(PER_DATASET, "data.dataset=fashion-mnist", "train={epochs: 3}").config
    assert whole.train.epochs == 3


def test_for_dataset_errors_name_the_entry_and_its_line(tmp_path):
    path = tmp_path / "c.yaml"
    cases = {
        "  fashoin-mnist: {train.epochs: 9}\n": "for_dataset.fashoin-mnist: unknown dataset",
        "  fashion-mnist: [train.epochs=9]\n": "for_dataset.fashion-mnist: expected a mapping",
        "  mnist: {'train epochs': 9}\n": "for_dataset.mnist.train epochs: 'train epochs' is not",
        "  mnist: {'model.layers[5].units': 3}\n": "model.layers[5] does not exist (2 items)",
        "  mnist: {data.dataset: fashion-mnist}\n": "cannot be set here",
    }
    for entry, expected in cases.items():
        path.write_text(MODEL + "for_dataset:\n" + entry)
        with pytest.raises(ConfigError) as info:
            load_config(str(path), parts=PARTS)
        assert messages(info)[0].startswith(f"{path}:3: "), messages(info)
        assert expected in messages(info)[0], messages(info)
    # a bad value is the entry's error, at the entry's line
    path.write_text(MODEL + "for_dataset:\n  mnist:\n    train.epochs: -1\n")
    with pytest.raises(ConfigErrors) as info:
        load_config(str(path), parts=PARTS)
    assert messages(info) == [f"{path}:4: train.epochs: must be >= 0, got -1"]
    path.write_text(MODEL + "for_dataset: [mnist]\n")
    with pytest.raises(ConfigError, match="for_dataset: expected a mapping of dataset names"):
        load_config(str(path), parts=PARTS)
