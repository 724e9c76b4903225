"""Each deliberate mistake is caught by its own check and by no other; correct layers pass."""

from pathlib import Path

import pytest

from bptrain.custom.source import import_file
from cli_helpers import invoke, records

HERE = Path(__file__).parent
BROKEN = HERE / "broken_layers.py"
BOOK = HERE / "book_layers.py"
EXPECTED = import_file(BROKEN).EXPECTED  # {class: (reference, the one check that catches it)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_mistake_fails_its_own_check_only(name):
    reference, expected = EXPECTED[name]
    result = invoke("check", f"{BROKEN}:{name}", "--as", reference)
    assert result.exit_code == 1, result.stderr
    [record] = records(result.stdout)
    failing = [c["name"] for c in record["checks"] if not c["ok"]]
    assert failing == [expected], record["checks"]
    assert record["as"] == reference and record["class"] == name and record["ok"] is False
    [detail] = [c["detail"] for c in record["checks"] if not c["ok"]]
    assert "seed" in detail or "shape" in detail, detail  # the input that triggers it is named


def test_words_for_the_common_mistakes():
    words = {
        "SigmoidSignError": "the sign is flipped",
        "AffineTransposedDW": "dW is transposed",
        "AffineDbWrongAxis": "summed over the wrong axis",
        "LossNoBatchDivide": "divide dx by the batch size",
        "BatchNormBatchStatsAtInference": "running mean and variance",
        "ReluStaleMask": "did not replace what the first one cached",
        "ReluChangesX": "forward changed its input x",
        "AffineFloat64": "db is float64",
    }
    for name, needle in words.items():
        reference, _ = EXPECTED[name]
        [record] = records(invoke("check", f"{BROKEN}:{name}", "--as", reference).stdout)
        details = " ".join(c["detail"] for c in record["checks"] if not c["ok"])
        assert needle in details, (name, details)


def test_correct_book_layers_pass_every_check():
    result = invoke("check", BOOK)
    assert result.exit_code == 0, result.stderr
    got = {r["class"]: r for r in records(result.stdout)}
    assert set(got) == {"Convolution", "Pooling", "BatchNormalization", "Dropout", "Swish"}
    assert {c: r["as"] for c, r in got.items()} == {
        "Convolution": "conv2d",
        "Pooling": "max_pool2d",
        "BatchNormalization": "batch_norm",
        "Dropout": "dropout",
        "Swish": None,
    }
    for record in got.values():
        assert record["ok"] and all(c["ok"] for c in record["checks"]), record
    names = {c["name"] for c in got["BatchNormalization"]["checks"]}
    assert {"forward", "backward", "inference", "leaves_dout"} <= names
    # A class with no reference is still held against central differences.
    swish = {c["name"]: c for c in got["Swish"]["checks"]}
    assert "forward" not in swish and "central differences" in swish["backward"]["detail"]


@pytest.mark.parametrize(
    ("name", "reference"), [("_Affine", "affine"), ("_Loss", "softmax_with_loss")]
)
def test_the_correct_versions_the_mistakes_were_made_from_pass(name, reference):
    result = invoke("check", f"{BROKEN}:{name}", "--as", reference)
    [record] = records(result.stdout)
    assert result.exit_code == 0 and record["ok"], record
