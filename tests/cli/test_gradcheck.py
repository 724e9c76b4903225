"""`bptrain gradcheck` through the CLI: passes for the presets, catches a wrong backward."""

from bptrain.engine.layers import LAYERS, Affine
from cli_helpers import (
    invoke,
    records,
    small_config,
    write_config,
)


def test_gradcheck_passes_for_the_presets():
    result = invoke("gradcheck", "mlp")
    assert result.exit_code == 0, result.stderr
    (record,) = records(result.stdout)
    assert record["ok"] and record["tolerance"] == 1e-6 and record["max_relative_error"] < 1e-6
    names = [p["name"] for p in record["parameters"]]
    assert names == ["1.W", "1.b", "3.W", "3.b", "input"]
    assert record["parameters"][0]["shape"] == [784, 50]


class _WrongAffine(Affine):
    """A fixture layer whose weight gradient is off by a factor: gradcheck must catch it."""

    name = "wrong_affine"

    def backward(self, dout):
        dx = super().backward(dout)
        self.grads["W"] *= 1.01
        return dx


def test_gradcheck_fails_with_exit_1_naming_a_wrong_layers_parameter(tmp_path, monkeypatch):
    monkeypatch.setitem(LAYERS._classes, "wrong_affine", _WrongAffine)
    config = small_config(tmp_path)
    config["data"] = {"dataset": "mnist"}
    config["model"]["layers"][3]["type"] = "wrong_affine"
    result = invoke("gradcheck", write_config(tmp_path / "c.yaml", config))
    assert result.exit_code == 1
    (record,) = records(result.stdout)
    assert not record["ok"]
    bad = {p["name"] for p in record["parameters"] if p["max_relative_error"] > 1e-6}
    assert bad == {"3.W"}
    assert "3.W of layer 3 (wrong_affine)" in result.stderr


def test_gradcheck_records_how_many_points_were_compared():
    record = records(invoke("gradcheck", "mlp", "--coords", "5").stdout)[0]
    assert all(p["checked"] >= 1 for p in record["parameters"])
