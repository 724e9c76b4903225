"""Learning-rate schedules against their closed forms, with and without warm-up."""

from __future__ import annotations

import math

import pytest

from bptrain.engine.schedules import SCHEDULES, Cosine, Step
from bptrain.errors import ConfigError


def test_registered_names() -> None:
    assert {"constant", "step", "cosine"} <= set(SCHEDULES.names())


def test_constant_is_one() -> None:
    schedule = SCHEDULES.build("constant")
    assert [schedule.factor(p, 10) for p in (0, 0.5, 9.99, 20)] == [1.0] * 4


@pytest.mark.parametrize(
    ("progress", "expected"),
    [(0, 1.0), (1.99, 1.0), (2.0, 0.5), (3.5, 0.5), (4.0, 0.25), (7, 0.125)],
)
def test_step_decays_every_step_size_epochs(progress: float, expected: float) -> None:
    schedule = SCHEDULES.build({"type": "step", "step_size": 2, "gamma": 0.5})
    assert schedule.factor(progress, 10) == pytest.approx(expected, rel=1e-15)


def test_step_default_gamma() -> None:
    assert Step(step_size=3).factor(6.0, 10) == pytest.approx(0.01)


@pytest.mark.parametrize("min_factor", [0.0, 0.1])
def test_cosine_closed_form(min_factor: float) -> None:
    schedule = Cosine(min_factor=min_factor)
    for progress in (0.0, 1.3, 2.5, 4.0, 5.0):
        expected = min_factor + (1 - min_factor) * (1 + math.cos(math.pi * progress / 5)) / 2
        assert schedule.factor(progress, 5) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert schedule.factor(2.5, 5) == pytest.approx((1 + min_factor) / 2)
    assert schedule.factor(5.0, 5) == pytest.approx(min_factor, abs=1e-15)
    assert schedule.factor(7.0, 5) == pytest.approx(min_factor, abs=1e-15)  # stays at the floor


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "constant", "warmup": 2},
        {"type": "step", "step_size": 1, "gamma": 0.5, "warmup": 2},
        {"type": "cosine", "min_factor": 0.2, "warmup": 2},
    ],
)
def test_warmup_ramps_linearly_to_the_schedule(spec: dict) -> None:
    warm = SCHEDULES.build(spec)
    plain = SCHEDULES.build({k: v for k, v in spec.items() if k != "warmup"})
    assert warm.factor(0.0, 10) == 0.0
    for progress in (0.1, 0.5, 1.0, 1.5, 1.99):
        expected = plain.factor(progress, 10) * progress / 2
        assert warm.factor(progress, 10) == pytest.approx(expected, rel=1e-12)
    for progress in (2.0, 3.5, 9.0):
        assert warm.factor(progress, 10) == plain.factor(progress, 10)


def test_fractional_warmup() -> None:
    schedule = SCHEDULES.build({"type": "constant", "warmup": 0.5})
    assert schedule.factor(0.25, 3) == pytest.approx(0.5)
    assert schedule.factor(0.5, 3) == 1.0


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"type": "constant", "warmup": -1}, "warmup"),
        ({"type": "step", "step_size": 0}, "step_size"),
        ({"type": "step", "step_size": 2, "gamma": 0}, "gamma"),
        ({"type": "cosine", "min_factor": 1.5}, "min_factor"),
    ],
)
def test_bad_values_name_their_key(spec: dict, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        SCHEDULES.build(spec, path="schedule")
    assert info.value.path == f"schedule.{path}"


def test_step_requires_step_size() -> None:
    errors = SCHEDULES.check({"type": "step"})
    assert [e.path for e in errors] == ["step_size"]


def test_linear_falls_in_a_straight_line_to_its_floor_after_its_warm_up():
    from bptrain.engine.schedules import SCHEDULES

    linear = SCHEDULES.build({"type": "linear", "min_factor": 0.1, "warmup": 1})
    assert linear.factor(0, 10) == 0.0
    assert linear.factor(0.5, 10) == pytest.approx(0.5 * (0.1 + 0.9 * 0.95))
    assert linear.factor(1, 10) == pytest.approx(0.1 + 0.9 * 0.9)
    assert linear.factor(5, 10) == pytest.approx(0.55)
    assert linear.factor(10, 10) == pytest.approx(0.1)
    assert linear.factor(12, 10) == pytest.approx(0.1)
