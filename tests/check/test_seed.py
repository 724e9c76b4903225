"""The seed's classes, checked: exactly their known flaws, in words; the fixed copy passes."""

from pathlib import Path

import pytest

from cli_helpers import assert_error, invoke, records

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed_layers.py"
FIXED = ROOT / "examples" / "seed_layers_fixed.py"
SEED_NOTES = ROOT.parent / "shared" / "seed"


def failures(stdout):
    return {
        r["class"]: {c["name"]: c["detail"] for c in r["checks"] if not c["ok"]}
        for r in records(stdout)
    }


def test_the_seed_reports_exactly_its_flaws():
    result = invoke("check", SEED)
    assert result.exit_code == 1
    found = failures(result.stdout)
    assert set(found) == {"MulLayer", "Relu", "Sigmoid", "Affine", "SoftmaxWithLoss"}
    assert found["MulLayer"] == {} and found["Affine"] == {}
    assert list(found["Relu"]) == ["leaves_dout"]
    assert "dout[self.mask] = 0" in found["Relu"]["leaves_dout"]
    assert list(found["Sigmoid"]) == ["large_inputs"]
    assert "large negative x" in found["Sigmoid"]["large_inputs"]
    assert "overflow" in found["Sigmoid"]["large_inputs"]
    assert sorted(found["SoftmaxWithLoss"]) == ["label_forms", "large_inputs"]
    assert "clipped" in found["SoftmaxWithLoss"]["large_inputs"]
    assert "labels as indices" in found["SoftmaxWithLoss"]["label_forms"]
    # The scorecard shows what holds too, and the doubly defined Affine is pointed out.
    assert "ok   forward         forward equals the reference" in result.stderr
    assert "Affine is defined 2 times" in result.stderr
    assert "3 of 5 classes fail a check" in result.stderr


def test_the_fixed_copy_passes_everything():
    result = invoke("check", FIXED)
    assert result.exit_code == 0, result.stderr
    recs = records(result.stdout)
    assert {r["class"] for r in recs} >= {"Relu", "Sigmoid", "Affine", "SoftmaxWithLoss"}
    assert all(r["ok"] for r in recs)


def test_the_verbatim_sigmoid_is_a_syntax_error_at_its_line(tmp_path):
    text = SEED.read_text(encoding="utf-8")
    lines = text.splitlines()
    [i] = [n for n, line in enumerate(lines) if line == "class Sigmoid:"]
    assert lines[i + 1] == "\tdef __init__(self):"
    lines[i + 1] = "\tdef __init__（self):"  # as the seed's notes type it
    verbatim = tmp_path / "seed_layers.py"
    verbatim.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = invoke("check", verbatim)
    assert_error(result, 2, f"seed_layers.py:{i + 2}:", "full-width", "type '('")


@pytest.mark.skipif(not SEED_NOTES.is_dir(), reason="the seed's notes are not beside the checkout")
def test_the_notes_type_the_full_width_parenthesis():
    notes = "".join(p.read_text(encoding="utf-8") for p in SEED_NOTES.glob("*.txt"))
    assert "def __init__（self):" in notes
    seed_code = SEED.read_text(encoding="utf-8")
    for line in (
        "dout[self.mask] = 0",
        "out =  1 / (1 + np.exp(-x))",
        "dx = (self.y - self.t) / batch_size",
    ):
        assert line in notes and line in seed_code
