"""Label smoothing in softmax_with_loss against its closed form and the gradient check."""

import numpy as np
import pytest

from bptrain.engine import gradcheck
from bptrain.engine.losses import SoftmaxWithLoss
from bptrain.errors import ConfigError


def _closed_form(x, labels, eps):
    """L = -mean_i sum_c t'_ic log softmax(x)_ic with t' = (1 - eps) onehot + eps / C, and
    dL/dx = (softmax(x) - t') / N, in float64 straight from the definitions."""
    n, c = x.shape
    y = np.exp(x - x.max(axis=1, keepdims=True))
    y /= y.sum(axis=1, keepdims=True)
    target = np.full((n, c), eps / c)
    target[np.arange(n), labels] += 1 - eps
    return -np.sum(target * np.log(y)) / n, (y - target) / n, target


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("as_onehot", [False, True])
def test_loss_and_gradient_match_the_closed_form(eps, as_onehot):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((9, 5)) * 3
    labels = rng.integers(0, 5, 9)
    t = np.eye(5)[labels] if as_onehot else labels
    loss = SoftmaxWithLoss(label_smoothing=eps)
    value = loss.forward(x.copy(), t)
    expected, grad, _ = _closed_form(x, labels, eps)
    assert value == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(loss.backward(), grad, rtol=1e-10, atol=1e-15)


def test_smoothing_raises_the_loss_of_a_confident_right_answer():
    x = np.array([[20.0, 0, 0, 0]])
    plain = SoftmaxWithLoss().forward(x.copy(), np.array([0]))
    smooth = SoftmaxWithLoss(label_smoothing=0.2).forward(x.copy(), np.array([0]))
    assert plain < 1e-8 and smooth == pytest.approx(0.2 * 3 / 4 * 20, rel=1e-6)


def test_float32_stays_float32():
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    loss = SoftmaxWithLoss(label_smoothing=0.1)
    assert loss.forward(x, np.arange(6) % 4).dtype == np.float32
    assert loss.backward().dtype == np.float32


def test_the_gradient_check_passes_with_smoothing():
    report = gradcheck.check_loss({"type": "softmax_with_loss", "label_smoothing": 0.1}, classes=5)
    assert report.ok and report.parameters, report.to_record()


@pytest.mark.parametrize("eps", [-0.1, 1.0, 2])
def test_out_of_range_smoothing_is_a_config_error(eps):
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        SoftmaxWithLoss(label_smoothing=eps)
