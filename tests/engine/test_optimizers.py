"""Optimizers against hand-computed update rules; weight decay, clipping, exact resume."""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
import pytest

from bptrain.engine import optimizers
from bptrain.engine.optimizers import OPTIMIZERS, SGD, Optimizer, clip_global_norm, decays
from bptrain.errors import ConfigError

# The quadratic f(w) = sum(A * w^2) / 2 has gradient A * w; one coordinate per curvature.
A = np.array([0.5, 2.0, -1.0])
W0 = np.array([1.0, -2.0, 3.0])
STEPS = 4


def run(optimizer: Optimizer, steps: int = STEPS, name: str = "1.W") -> np.ndarray:
    """Minimize the quadratic from W0 for `steps` updates; return the final w."""
    w = W0.copy()
    for _ in range(steps):
        optimizer.update({name: w}, {name: A * w})
    return w


def reference(rule: Callable[[float, float, dict], float], steps: int = STEPS) -> np.ndarray:
    """The same run coordinate by coordinate in scalar Python: rule(w, g, state) -> new w."""
    result = []
    for a, w in zip(A, W0, strict=True):
        state: dict = {"t": 0}
        for _ in range(steps):
            state["t"] += 1
            w = rule(w, a * w, state)
        result.append(w)
    return np.array(result)


def sgd_rule(lr: float) -> Callable:
    return lambda w, g, s: w - lr * g


def momentum_rule(lr: float, mu: float, nesterov: bool) -> Callable:
    def rule(w: float, g: float, s: dict) -> float:
        s["v"] = mu * s.get("v", 0.0) - lr * g
        return w + (mu * s["v"] - lr * g if nesterov else s["v"])

    return rule


def adagrad_rule(lr: float, eps: float) -> Callable:
    def rule(w: float, g: float, s: dict) -> float:
        s["h"] = s.get("h", 0.0) + g * g
        return w - lr * g / (math.sqrt(s["h"]) + eps)

    return rule


def rmsprop_rule(lr: float, rho: float, eps: float) -> Callable:
    def rule(w: float, g: float, s: dict) -> float:
        s["h"] = rho * s.get("h", 0.0) + (1 - rho) * g * g
        return w - lr * g / (math.sqrt(s["h"]) + eps)

    return rule


def adam_rule(lr: float, b1: float, b2: float, eps: float, decay: float = 0.0) -> Callable:
    def rule(w: float, g: float, s: dict) -> float:
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        m_hat, v_hat = s["m"] / (1 - b1 ** s["t"]), s["v"] / (1 - b2 ** s["t"])
        return w * (1 - lr * decay) - lr * m_hat / (math.sqrt(v_hat) + eps)

    return rule


CASES = [
    ({"type": "sgd", "lr": 0.1}, sgd_rule(0.1)),
    ({"type": "sgd", "lr": 0.1, "momentum": 0.5}, momentum_rule(0.1, 0.5, False)),
    ({"type": "momentum", "lr": 0.1}, momentum_rule(0.1, 0.9, False)),
    ({"type": "sgd", "lr": 0.1, "momentum": 0.5, "nesterov": True}, momentum_rule(0.1, 0.5, True)),
    ({"type": "nesterov", "lr": 0.1}, momentum_rule(0.1, 0.9, True)),
    ({"type": "adagrad", "lr": 0.5}, adagrad_rule(0.5, 1e-7)),
    ({"type": "adagrad", "lr": 0.5, "eps": 0.1}, adagrad_rule(0.5, 0.1)),
    ({"type": "rmsprop", "lr": 0.05}, rmsprop_rule(0.05, 0.99, 1e-7)),
    ({"type": "rmsprop", "lr": 0.05, "rho": 0.5, "eps": 0.01}, rmsprop_rule(0.05, 0.5, 0.01)),
    ({"type": "adam", "lr": 0.1}, adam_rule(0.1, 0.9, 0.999, 1e-8)),
    (
        {"type": "adam", "lr": 0.1, "beta1": 0.5, "beta2": 0.7, "eps": 0.1},
        adam_rule(0.1, 0.5, 0.7, 0.1),
    ),
    ({"type": "adamw", "lr": 0.1}, adam_rule(0.1, 0.9, 0.999, 1e-8, decay=0.01)),
    ({"type": "adamw", "lr": 0.1, "weight_decay": 0.5}, adam_rule(0.1, 0.9, 0.999, 1e-8, 0.5)),
]


@pytest.mark.parametrize(
    ("spec", "rule"), CASES, ids=lambda c: str(c) if isinstance(c, dict) else ""
)
def test_update_rule_matches_closed_form(spec: dict, rule: Callable) -> None:
    np.testing.assert_allclose(run(OPTIMIZERS.build(spec)), reference(rule), rtol=1e-12)


def test_registered_names_and_defaults() -> None:
    names = {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"}
    assert names <= set(OPTIMIZERS.names())
    assert OPTIMIZERS.build("momentum").momentum == 0.9
    nesterov = OPTIMIZERS.build("nesterov")
    assert nesterov.momentum == 0.9 and nesterov.nesterov
    assert OPTIMIZERS.build("sgd").momentum == 0.0
    assert OPTIMIZERS.build("adam").lr == 0.001


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
def test_l2_weight_decay_adds_to_the_gradient_of_weights_only(name: str) -> None:
    # With decay d, a weight's run equals the run on the quadratic whose curvature is A + d.
    decay = 0.3
    plain = OPTIMIZERS.build({"type": name, "lr": 0.1})
    decayed = OPTIMIZERS.build({"type": name, "lr": 0.1, "weight_decay": decay})
    w, b = W0.copy(), W0.copy()
    for _ in range(STEPS):
        decayed.update({"1.W": w, "1.b": b}, {"1.W": A * w, "1.b": A * b})
    np.testing.assert_array_equal(b, run(plain, name="1.b"))
    w_ref = W0.copy()
    reference_opt = OPTIMIZERS.build({"type": name, "lr": 0.1})
    for _ in range(STEPS):
        reference_opt.update({"1.W": w_ref}, {"1.W": (A + decay) * w_ref})
    np.testing.assert_allclose(w, w_ref, rtol=1e-12)


def test_decay_rule_by_parameter_name() -> None:
    assert decays("1.W") and decays("0.W") and decays("W")
    assert not any(decays(n) for n in ("1.b", "3.gamma", "3.beta", "1.Wx"))


def test_adamw_decay_is_decoupled_and_skips_biases() -> None:
    # With a zero gradient Adam's step is 0: only the decoupled decay moves the weight.
    opt = OPTIMIZERS.build({"type": "adamw", "lr": 0.1, "weight_decay": 0.5})
    w, b, gamma = np.ones(2), np.ones(2), np.ones(2)
    zeros = np.zeros(2)
    opt.update(
        {"1.W": w, "1.b": b, "2.gamma": gamma}, {"1.W": zeros, "1.b": zeros, "2.gamma": zeros}
    )
    np.testing.assert_allclose(w, 0.95, rtol=1e-15)
    assert b.tolist() == gamma.tolist() == [1.0, 1.0]


def test_clip_norm_scales_all_gradients_jointly() -> None:
    grads = {"1.W": np.array([3.0, 0.0]), "1.b": np.array([0.0, 4.0])}  # global norm 5
    opt = SGD(lr=1.0, clip_norm=1.0)
    params = {"1.W": np.zeros(2), "1.b": np.zeros(2)}
    opt.update(params, grads)
    np.testing.assert_allclose(params["1.W"], [-0.6, 0.0])
    np.testing.assert_allclose(params["1.b"], [0.0, -0.8])
    # The network's arrays were scaled in place (documented); the next backward overwrites them.
    np.testing.assert_allclose(grads["1.W"], [0.6, 0.0])


def test_clip_norm_leaves_small_gradients_alone() -> None:
    grads = {"a": np.array([0.3, 0.4], dtype=np.float32)}
    assert clip_global_norm(grads, 1.0) == pytest.approx(0.5)
    assert grads["a"].tolist() == pytest.approx([0.3, 0.4])


def test_clip_happens_before_weight_decay() -> None:
    opt = SGD(lr=1.0, clip_norm=1.0, weight_decay=0.5)
    w = np.array([2.0])
    opt.update({"1.W": w}, {"1.W": np.array([10.0])})
    assert w.tolist() == [2.0 - (1.0 + 0.5 * 2.0)]


def test_updates_are_in_place() -> None:
    for name in ("sgd", "nesterov", "adagrad", "rmsprop", "adam", "adamw"):
        w = W0.copy()
        params = {"1.W": w}
        OPTIMIZERS.build(name).update(params, {"1.W": A * w})
        assert params["1.W"] is w
        assert not np.array_equal(w, W0), name


ALL_SPECS = [
    {"type": "sgd", "lr": 0.1},
    {"type": "sgd", "lr": 0.1, "weight_decay": 0.01, "clip_norm": 5.0},
    {"type": "momentum", "lr": 0.1},
    {"type": "nesterov", "lr": 0.1, "weight_decay": 0.01},
    {"type": "adagrad", "lr": 0.1},
    {"type": "rmsprop", "lr": 0.01},
    {"type": "adam", "lr": 0.01, "clip_norm": 1.0},
    {"type": "adamw", "lr": 0.01},
]


def float32_problem() -> tuple[dict[str, np.ndarray], Callable[[int], dict[str, np.ndarray]]]:
    """float32 parameters and a deterministic, step-dependent noisy gradient."""
    rng = np.random.default_rng(0)
    params = {
        "1.W": rng.standard_normal((4, 3)).astype(np.float32),
        "1.b": rng.standard_normal(3).astype(np.float32),
        "2.gamma": np.ones(3, dtype=np.float32),
    }
    noise = [
        {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
        for _ in range(6)
    ]

    def grads(step: int) -> dict[str, np.ndarray]:
        return {k: v * np.float32(0.5) + noise[step][k] for k, v in params.items()}

    return params, grads


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s["type"])
def test_float32_state_and_parameters_stay_float32(spec: dict) -> None:
    params, grads = float32_problem()
    opt = OPTIMIZERS.build(spec)
    for step in range(3):
        opt.lr = opt.base_lr * 0.7  # as a schedule would set it
        opt.update(params, grads(step))
    assert all(v.dtype == np.float32 for v in params.values())
    assert all(v.dtype == np.float32 for v in opt.state.values())


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s["type"])
def test_resume_from_state_dict_is_bit_identical(spec: dict) -> None:
    params, grads = float32_problem()
    straight = OPTIMIZERS.build(spec)
    for step in range(6):
        straight.update(params, grads(step))
    final = {k: v.copy() for k, v in params.items()}

    params, grads = float32_problem()
    first = OPTIMIZERS.build(spec)
    for step in range(3):
        first.update(params, grads(step))
    saved = io.BytesIO()  # through an .npz as a checkpoint does, no pickle
    np.savez(saved, **first.state_dict())
    saved.seek(0)
    resumed = OPTIMIZERS.build(spec)
    with np.load(saved, allow_pickle=False) as archive:
        resumed.load_state_dict(dict(archive))
    assert resumed.steps == 3
    for step in range(3, 6):
        resumed.update(params, grads(step))
    for k in final:
        np.testing.assert_array_equal(params[k], final[k])


def test_state_dict_is_a_snapshot() -> None:
    opt = OPTIMIZERS.build({"type": "adam"})
    w = W0.copy()
    opt.update({"1.W": w}, {"1.W": A * w})
    snapshot = opt.state_dict()
    assert set(snapshot) == {"steps", "1.W.m", "1.W.v"}
    m = snapshot["1.W.m"].copy()
    opt.update({"1.W": w}, {"1.W": A * w})
    np.testing.assert_array_equal(snapshot["1.W.m"], m)


def run_float32(spec: dict, params: dict[str, np.ndarray], steps: int = 3) -> dict:
    """`steps` updates with the float32 problem's gradients; returns the optimizer's state."""
    _, grads = float32_problem()
    opt = OPTIMIZERS.build(spec)
    for step in range(steps):
        opt.update(params, {k: np.ascontiguousarray(g) for k, g in grads(step).items()})
    return opt.state


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s["type"])
def test_blockwise_updates_equal_whole_array_updates(
    spec: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Updates run over blocks of BLOCK elements (cache-sized); the split, including a short
    # last block (12 = 5 + 5 + 2), must not change a single bit.
    whole, _ = float32_problem()
    whole_state = run_float32(spec, whole)
    monkeypatch.setattr(optimizers, "BLOCK", 5)
    blocked, _ = float32_problem()
    blocked_state = run_float32(spec, blocked)
    for k in whole:
        np.testing.assert_array_equal(blocked[k], whole[k])
    assert blocked_state.keys() == whole_state.keys()
    for k in whole_state:
        np.testing.assert_array_equal(blocked_state[k], whole_state[k])


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s["type"])
def test_non_contiguous_parameters_update_in_place_like_contiguous_ones(spec: dict) -> None:
    # A parameter that cannot be flattened without a copy is updated whole, still in place.
    contiguous, _ = float32_problem()
    run_float32(spec, contiguous)
    params, _ = float32_problem()
    fortran = np.asfortranarray(params["1.W"])
    params["1.W"] = fortran
    run_float32(spec, params)
    assert params["1.W"] is fortran and not fortran.flags.c_contiguous
    for k in contiguous:
        np.testing.assert_array_equal(params[k], contiguous[k])


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"type": "sgd", "lr": 0}, "lr"),
        ({"type": "sgd", "momentum": 1.0}, "momentum"),
        ({"type": "sgd", "nesterov": True}, "nesterov"),
        ({"type": "adam", "beta1": 1.0}, "beta1"),
        ({"type": "adam", "beta2": -0.1}, "beta2"),
        ({"type": "rmsprop", "rho": 1.0}, "rho"),
        ({"type": "adagrad", "eps": 0.0}, "eps"),
        ({"type": "adamw", "weight_decay": -1.0}, "weight_decay"),
        ({"type": "momentum", "clip_norm": 0.0}, "clip_norm"),
    ],
)
def test_bad_values_name_their_key(spec: dict, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        OPTIMIZERS.build(spec, path="optimizer")
    assert info.value.path == f"optimizer.{path}"


def test_registry_rejects_unknown_options() -> None:
    errors = OPTIMIZERS.check({"type": "momentum", "nesterov": True, "clip_norm": "big"})
    assert {e.path for e in errors} == {"nesterov", "clip_norm"}
