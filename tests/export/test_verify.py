"""export/verify.py's rule: float32 rounding passes, anything more is exit 1; a class may flip
only where bptrain itself sees the two best classes as tied."""

import numpy as np
import pytest

from bptrain.errors import CheckFailed
from bptrain.export.verify import TOLERANCE, compare


def test_rounding_passes_and_more_fails():
    ours = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    compare(ours, ours + 0.9 * TOLERANCE).check("x")
    nudge = np.array([[2 * TOLERANCE, 0, -2 * TOLERANCE], [0, 0, 0]])
    agreement = compare(ours, ours + nudge)
    assert agreement.max_abs_diff == pytest.approx(2 * TOLERANCE)
    with pytest.raises(CheckFailed, match="differ by up to"):
        agreement.check("x")


def test_a_class_may_flip_only_on_a_tie():
    ours = np.array([[0.5, 0.5 - TOLERANCE / 2, 0.0], [0.6, 0.4, 0.0]])
    flipped_tie = np.array([[0.5 - TOLERANCE / 2, 0.5, 0.0], [0.6, 0.4, 0.0]])
    agreement = compare(ours, flipped_tie)
    assert (agreement.argmax_agreement, agreement.untied_disagreements) == (0.5, 0)
    agreement.check("x")
    flipped = compare(ours, np.array([[0.5, 0.5 - TOLERANCE / 2, 0.0], [0.4, 0.6, 0.0]]))
    assert flipped.untied_disagreements == 1
    with pytest.raises(CheckFailed, match="1 of 2 samples get another class"):
        flipped.check("x")


def test_non_finite_probabilities_never_pass():
    ours = np.array([[0.5, 0.5], [np.nan, np.nan]])
    agreement = compare(ours, ours.copy())
    assert agreement.nonfinite == 1
    with pytest.raises(CheckFailed, match="non-finite probabilities on 1 of 2"):
        agreement.check("x")
