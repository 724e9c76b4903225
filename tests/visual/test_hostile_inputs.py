"""`bptrain plot` and `bptrain graph` under hostile numbers and text: a clear exit 2 or 3, or a
picture; never exit 70, never a raw Python warning on stderr."""

import json
import subprocess
import sys

import pytest

from cli_helpers import assert_error, invoke, records, subprocess_env

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def epochs(**values):
    """Three epoch records; `values` go into the first one."""
    base = {"train_loss": 0.5, "val_loss": 0.6, "train_accuracy": 0.8, "val_accuracy": 0.7,
            "lr": 0.1}  # fmt: skip
    return "".join(
        json.dumps({"event": "epoch", "epoch": e, **base, **(values if e == 1 else {})}) + "\n"
        for e in (1, 2, 3)
    )


def evaluation(matrix):
    names = [str(k) for k in range(len(matrix))]
    record = {"event": "eval", "class_names": names, "confusion_matrix": matrix}
    return json.dumps(record) + "\n"


HOSTILE = [
    ("huge losses", epochs(train_loss=1e308, val_loss=1.7e308, lr=1e-300), 3,
     "train_loss = 1e+308 is beyond what a plot shows"),
    ("a huge loss beside small ones", epochs(val_loss=1e250), 3, "val_loss = 1e+250"),
    ("an integer loss past float64", epochs().replace('"train_loss": 0.5', '"train_loss": 1'
                                                        + "0" * 400, 1), 3, "1e+400"),
    ("a 5000-digit number", epochs().replace("0.5", "1" * 5000, 1), 3, "number too long"),
    ("counts of 1e30", evaluation([[10**30, 1], [2, 3]]), 3, "the count 1e+30"),
    ("100000 levels of nesting", "[" * 100_000 + "]" * 100_000 + "\n", 3, "nested too deeply"),
    ("an eval and epochs in one file", evaluation([[5, 1], [2, 3]]) + epochs(), 2,
     "holds an eval record (line 1) and a training run's epoch records (line 2 on)"),
    ("epochs, then an eval", epochs() + evaluation([[5, 1], [2, 3]]), 2,
     "eval record (line 4)"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "text", "code", "needle"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_records_are_refused_with_the_line(tmp_path, what, text, code, needle):
    path = tmp_path / "run.jsonl"
    path.write_text(text)
    out = tmp_path / "c.png"
    assert_error(invoke("plot", path, "--out", out), code, str(path), needle)
    assert not out.exists()


PICTURES = [
    ("a learning rate of 1e-300", epochs(lr=1e-300)),
    ("learning rates of 1e-300 and 0.1 (a log axis)", epochs(lr=1e-300).replace(
        '"lr": 0.1}', '"lr": 1e-300}', 1)),
    ("an infinite loss (JSON's 1e999), left out like a null", epochs().replace("0.5", "1e999", 1)),
    ("counts up to 2**53", evaluation([[2**53, 1], [2, 2**53]])),
]  # fmt: skip


@pytest.mark.parametrize(("what", "text"), PICTURES, ids=[p[0] for p in PICTURES])
def test_extreme_but_drawable_values_give_a_picture(tmp_path, what, text):
    path = tmp_path / "run.jsonl"
    path.write_text(text)
    out = tmp_path / "c.png"
    result = invoke("plot", path, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert records(result.stdout)[0]["event"] == "plot"
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_counts_up_to_2_53_are_written_exactly():
    from bptrain.visual import plot
    from bptrain.visual.runs import EvalRun

    record = {"event": "eval", "class_names": ["a", "b"],
              "confusion_matrix": [[2**53, 1], [0, 2**53 - 1]]}  # fmt: skip
    picture = plot.render([EvalRun("eval.jsonl", record, 1)])
    assert picture.cells == [["9,007,199,254,740,992", "1"], ["0", "9,007,199,254,740,991"]]


def plot_process(*args):
    """`bptrain plot ...` in a real process: Python's own warnings reach its real stderr."""
    return subprocess.run(
        [sys.executable, "-m", "bptrain", "plot", *map(str, args)],
        capture_output=True, text=True, env=subprocess_env(), timeout=120,
    )  # fmt: skip


def no_raw_warning(stderr):
    assert "Warning:" not in stderr and ".py:" not in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("title", ["a $x_$ b", "costs $5 and $6", r"\frac{$", "$$"])
def test_a_title_with_dollars_is_drawn_as_typed(tmp_path, title):
    from bptrain.visual import plot
    from bptrain.visual.runs import read_run

    path = tmp_path / "run.jsonl"
    path.write_text(epochs())
    out = tmp_path / "c.png"
    done = plot_process(path, path, "--title", title, "--label", title, "--label", "b",
                        "--out", out)  # fmt: skip
    assert done.returncode == 0, done.stderr
    no_raw_warning(done.stderr)
    assert out.read_bytes().startswith(PNG_MAGIC)
    runs = [read_run(str(path), stdin=None) for _ in range(2)]
    runs[0].label, runs[1].label = title, "b"
    picture = plot.render(runs, title=title)
    assert picture.figure.get_suptitle() == title
    assert title in picture.legend


def test_a_class_name_with_dollars_is_drawn_as_typed(tmp_path):
    path = tmp_path / "eval.jsonl"
    record = {"event": "eval", "class_names": ["$x_$", "b"], "confusion_matrix": [[1, 0], [0, 1]]}
    path.write_text(json.dumps(record) + "\n")
    done = plot_process(path, "--title", "a $y_$", "--out", tmp_path / "c.svg")
    assert done.returncode == 0, done.stderr
    no_raw_warning(done.stderr)


def test_glyphs_the_font_lacks_are_named_in_one_line(tmp_path):
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    font = FT2Font(font_manager.findfont("DejaVu Sans"))
    if font.get_char_index(ord("精")):
        pytest.skip("the default font has CJK glyphs here")
    path = tmp_path / "run.jsonl"
    path.write_text(epochs())
    for suffix in ("png", "svg", "pdf"):
        out = tmp_path / f"c.{suffix}"
        done = plot_process(path, path, "--title", "Précision — 精度 🚀", "--label", "精",
                            "--label", "b", "--out", out)  # fmt: skip
        assert done.returncode == 0, done.stderr
        no_raw_warning(done.stderr)
        (line,) = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
        assert line.startswith("WARNING: the font (DejaVu Sans) has no glyph for 精 度 🚀:")
        assert out.stat().st_size > 1000


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        (["apple.price=1e308", "apple.count=10"], "forward.apple_price is inf"),
        (["apple.price=1e308", "apple.count=10", "tax=0"], "forward.apple_price is inf"),
        (["dout=1e308", "apple.count=10"], "backward.apple.price is inf"),
    ],
)
@pytest.mark.parametrize("fmt", ["json", "dot", "mermaid"])
def test_a_graph_whose_numbers_overflow_is_a_usage_error(settings, needle, fmt, tmp_path):
    sets = [arg for setting in settings for arg in ("--set", setting)]
    out = tmp_path / f"shop.{fmt}"
    result = invoke("graph", "shop", *sets, "--format", fmt, "--out", out)
    assert_error(result, 2, "--set", needle, "float64")
    assert not out.exists()
    assert_error(invoke("graph", "shop", *sets, "--format", fmt), 2, needle)
