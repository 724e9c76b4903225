"""A config survives --print-config: each preset with random valid --set overrides, printed,
read back, is the same config, and printing it again gives the same bytes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bptrain.config import load_config, parse_key, preset_names
from bptrain.run.parts import PARTS
from cli_helpers import invoke

# Values every preset accepts, each under the --set key it goes to. None is YAML's null.
OVERRIDES: dict[str, st.SearchStrategy[Any]] = {
    "seed": st.none() | st.integers(0, 2**63 - 1),
    "data.dataset": st.sampled_from(["mnist", "fashion-mnist", "idx"]),
    "data.validation": st.integers(1, 20_000),
    "data.limit_train": st.none() | st.integers(1, 60_000),
    "optimizer.lr": st.floats(1e-7, 10.0),
    "train.epochs": st.integers(1, 200),
    "train.batch_size": st.integers(1, 2048),
    "train.eval_batch_size": st.integers(1, 10_000),
    "train.early_stopping": st.none() | st.integers(1, 50),
    "train.restore_best": st.booleans(),
    "train.sync_batch_norm": st.booleans(),
    "train.ema": st.none() | st.floats(0.0, 1.0, exclude_min=True, exclude_max=True),
    "train.schedule": st.sampled_from(
        [
            None,
            {"type": "constant"},
            {"type": "cosine", "min_factor": 0.05},
            {"type": "linear"},
            {"type": "step", "step_size": 3, "gamma": 0.5},
        ]
    ),
}


def as_yaml(value: Any) -> str:
    """A --set value as YAML flow text (floats by repr, so they read back to the same bits)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {as_yaml(v)}" for k, v in value.items()) + "}"
    return repr(value) if isinstance(value, float) else str(value)


def value_at(plain: Any, key: str) -> Any:
    for part in parse_key(key, "test"):
        plain = plain[part]
    return plain


def print_config(*args: str, input: str | None = None) -> str:
    result = invoke("train", *args, "--print-config", input=input)
    assert result.exit_code == 0, result.stderr
    return result.stdout


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    preset=st.sampled_from(preset_names()),
    overrides=st.fixed_dictionaries({}, optional=OVERRIDES),
)
def test_print_config_reads_back_as_the_same_config(preset, overrides):
    sets = [f"{key}={as_yaml(value)}" for key, value in overrides.items()]
    printed = print_config(preset, *(a for s in sets for a in ("--set", s)))

    again = load_config("-", parts=PARTS, stdin_text=lambda: printed).config
    expected = load_config(preset, sets, parts=PARTS).config
    assert again.seed is not None  # a drawn seed is printed, so the run can be repeated
    if expected.seed is not None:
        assert again.seed == expected.seed
    assert again == replace(expected, seed=again.seed)
    for key, value in overrides.items():  # --set has the last word, for_dataset or not
        if key != "seed" or value is not None:
            assert value_at(again.to_dict(), key) == value, key
    assert print_config("-", input=printed) == printed
