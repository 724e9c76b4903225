"""`bptrain check` as a command: records, choosing classes, --as, and bad input."""

import json
import subprocess
import sys
from pathlib import Path

from cli_helpers import assert_error, invoke, records, subprocess_env

HERE = Path(__file__).parent
BOOK = HERE / "book_layers.py"
RECORD_KEYS = {"event", "file", "class", "as", "ok", "checks"}


def test_one_record_per_class_and_nothing_else_on_stdout():
    result = invoke("check", f"{BOOK}:Pooling", f"{BOOK}:Swish")
    assert result.exit_code == 0
    recs = records(result.stdout)
    assert [r["class"] for r in recs] == ["Pooling", "Swish"]
    for record in recs:
        assert set(record) == RECORD_KEYS and record["event"] == "check"
        for check in record["checks"]:
            assert set(check) == {"name", "ok", "detail", "max_error"}
    assert "Pooling (held against max_pool2d)" in result.stderr


def test_as_holds_a_class_against_the_reference_named(tmp_path):
    layer = tmp_path / "mine.py"
    layer.write_text(
        "import numpy as np\n"
        "class Rectifier:\n"
        "    def forward(self, x):\n"
        "        self.mask = x > 0\n"
        "        return x * self.mask\n"
        "    def backward(self, dout):\n"
        "        return dout * self.mask\n"
    )
    [plain] = records(invoke("check", layer).stdout)
    assert plain["as"] is None
    result = invoke("check", f"{layer}:Rectifier", "--as", "relu")
    [record] = records(result.stdout)
    assert record["as"] == "relu" and record["ok"] and record["checks"][0]["name"] == "forward"
    assert_error(invoke("check", layer, "--as", "rleu"), 2, "--as rleu", "did you mean 'relu'")


def test_a_missing_class_lists_what_the_file_defines():
    assert_error(invoke("check", f"{BOOK}:Convolutoin"), 2, "no class 'Convolutoin'", "Convolution")


def test_import_errors_name_the_file_and_line(tmp_path):
    broken = tmp_path / "layers.py"
    broken.write_text("import numpy as np\n\nW = undefined_name + 1\n")
    assert_error(invoke("check", broken), 2, f"{broken}:3:", "NameError", "undefined_name")
    missing = tmp_path / "nowhere.py"
    assert_error(invoke("check", missing), 2, "does not exist")


def test_a_file_without_layers_is_a_usage_error(tmp_path):
    plain = tmp_path / "plain.py"
    plain.write_text("class Config:\n    pass\n")
    assert_error(invoke("check", plain), 2, "no class with forward() and backward()")


def test_as_needs_exactly_one_class():
    assert_error(invoke("check", BOOK, "--as", "relu"), 2, "--as matches one class")


def test_a_real_process_pipes_its_records(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bptrain", "check", f"{BOOK}:Dropout"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["checks"][-1]["name"] == "inference"


def test_a_bptrain_layer_subclass_is_built_and_checked(tmp_path):
    mine = tmp_path / "practitioner.py"
    mine.write_text(
        "import numpy as np\n"
        "from bptrain.engine.layers import Layer\n\n"
        "class Dense(Layer):\n"
        "    def __init__(self, units=1):\n"
        "        super().__init__()\n"
        "        self.units = units\n\n"
        "    def build(self, input_shape, rng, dtype):\n"
        "        fan_in = int(np.prod(input_shape))\n"
        "        W = rng.standard_normal((fan_in, self.units)).astype(dtype)\n"
        "        self._set_params(W=W, b=np.zeros(self.units, dtype))\n"
        "        return (self.units,)\n\n"
        "    def forward(self, x, train=False):\n"
        "        self.shape, self.x = x.shape, x.reshape(len(x), -1)\n"
        "        return self.x @ self.params['W'] + self.params['b']\n\n"
        "    def backward(self, dout):\n"
        "        self.grads['W'][...] = self.x.T @ dout\n"
        "        self.grads['b'][...] = dout.sum(axis=0)\n"
        "        return (dout @ self.params['W'].T).reshape(self.shape)\n"
    )
    result = invoke("check", f"{mine}:Dense", "--as", "affine")
    [record] = records(result.stdout)
    assert result.exit_code == 0 and record["ok"], result.stderr
    assert {"forward", "backward", "shapes", "tensor_input"} <= {
        c["name"] for c in record["checks"]
    }
    # The same class with its bias gradient summed over the wrong axis is caught.
    mine.write_text(mine.read_text().replace("dout.sum(axis=0)", "dout.sum(axis=1)[:1]"))
    result = invoke("check", f"{mine}:Dense", "--as", "affine")
    assert result.exit_code == 1
    [record] = records(result.stdout)
    assert [c["name"] for c in record["checks"] if not c["ok"]] == ["backward"]
