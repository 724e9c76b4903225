"""`bptrain plot`: real matplotlib pictures of real (short) training runs and evals."""

import json
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from bptrain.run import checkpoint
from bptrain.visual import plot
from cli_helpers import assert_error, invoke, records, small_config, subprocess_env, write_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, idx_folder):
    """Two short runs (lr 0.05 and 0.2) with their checkpoints and JSON Lines, and an eval."""
    folder = tmp_path_factory.mktemp("runs")
    made = {}
    for name, lr in (("slow", 0.05), ("fast", 0.2)):
        config = write_config(folder / f"{name}.yaml", small_config(idx_folder, epochs=3))
        out = folder / f"{name}.npz"
        result = invoke("train", config, "--lr", lr, "--out", out, "-q")
        assert result.exit_code == 0, result.stderr
        (folder / f"{name}.jsonl").write_text(result.stdout)
        made[name] = out
    evaluated = invoke("eval", made["slow"], "-q")
    assert evaluated.exit_code == 0, evaluated.stderr
    (folder / "eval.jsonl").write_text(evaluated.stdout)
    made["eval"] = folder / "eval.jsonl"
    made["folder"] = folder
    return made


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def plotted(*args, input=None):
    result = invoke("plot", *args, input=input)
    assert result.exit_code == 0, result.stderr
    (record,) = records(result.stdout)  # stdout: the one record and nothing else
    return record


def test_png_from_a_checkpoint_has_the_asked_pixel_size(runs, tmp_path):
    out = tmp_path / "curves.png"
    record = plotted(runs["slow"], "--out", out, "--size", "8x3", "--dpi", "50")
    assert png_size(out) == (400, 150)
    assert record == {
        "event": "plot", "kind": "curves", "format": "png", "out": str(out),
        "runs": [str(runs["slow"])], "labels": ["slow"], "width": 400, "height": 150, "dpi": 50,
    }  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]  # no temp file left


def test_png_from_the_training_json_lines_on_stdin(runs, tmp_path):
    out = tmp_path / "nested" / "curves.png"
    text = (runs["folder"] / "fast.jsonl").read_text()
    record = plotted("-", "--out", out, input=text)
    assert png_size(out) == (1800, 630)  # 12 x 4.2 inches at 150 dpi
    assert (record["runs"], record["labels"]) == (["-"], ["stdin"])


def test_single_run_title_names_the_run_and_its_test_accuracy(runs):
    summary = records((runs["folder"] / "slow.jsonl").read_text())[-1]
    from_checkpoint = plot.render([plot.read_run(str(runs["slow"]), stdin=None)])
    title = from_checkpoint.figure.get_suptitle()
    assert checkpoint.load(runs["slow"]).info.name == "slow"  # the config file's name
    assert title.startswith("slow · idx · seed 3 · ")
    assert f"test accuracy {summary['test_accuracy']:.2%}" in title
    from_jsonl = plot.render([plot.read_run(str(runs["folder"] / "slow.jsonl"), stdin=None)])
    jsonl_title = from_jsonl.figure.get_suptitle()
    assert jsonl_title.startswith("slow.jsonl · seed 3 · ")
    assert f"test accuracy {summary['test_accuracy']:.2%}" in jsonl_title


def test_svg_overlay_of_two_runs_names_both_in_its_legend(runs, tmp_path):
    out = tmp_path / "curves.svg"
    plotted(runs["slow"], runs["folder"] / "fast.jsonl", "--out", out,
            "--label", "lr 0.05", "--label", "lr 0.2")  # fmt: skip
    root = ET.parse(out).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = out.read_text()
    assert "lr 0.05 (test " in text and "lr 0.2 (test " in text  # the legend's entries


def test_overlay_legend_has_one_entry_per_run_then_the_line_styles(runs):
    inputs = [plot.read_run(str(runs[name]), stdin=None) for name in ("slow", "fast")]
    picture = plot.render(inputs)
    assert [entry.split(" (")[0] for entry in picture.legend[:2]] == ["slow", "fast"]
    assert picture.legend[2:] == ["training", "validation", "best validation accuracy"]
    loss_axes = picture.figure.axes[0]
    assert len(loss_axes.get_lines()) == 4  # two runs x (training, validation)


def test_pdf(runs, tmp_path):
    out = tmp_path / "curves.PDF"
    assert plotted(runs["slow"], "--out", out)["format"] == "pdf"
    assert out.read_bytes().startswith(b"%PDF")


def test_confusion_matrix_cells_are_the_eval_records_counts(runs, tmp_path):
    (record,) = records(runs["eval"].read_text())
    out = tmp_path / "confusion.png"
    assert plotted(runs["eval"], "--out", out)["kind"] == "confusion"
    assert png_size(out) == (1050, 900)  # 7 x 6 inches at 150 dpi
    picture = plot.render([plot.read_run(str(runs["eval"]), stdin=None)])
    assert [[int(c.replace(",", "")) for c in row] for row in picture.cells] == record[
        "confusion_matrix"
    ]
    ax = picture.figure.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == record["class_names"]
    assert ax.get_title() == f"slow · test split · accuracy {record['accuracy']:.2%} · n = 200"
    share = ax.get_images()[0].get_array()
    assert list(share.sum(axis=1)) == pytest.approx([1] * 10)  # rows normalised


def test_null_values_are_left_out_of_the_lines(tmp_path):
    lines = [
        {"event": "epoch", "epoch": 1, "train_loss": 1.0, "val_loss": 0.9, "val_accuracy": 0.5},
        {"event": "epoch", "epoch": 2, "train_loss": None, "val_loss": 0.7, "val_accuracy": 0.8},
        {"event": "epoch", "epoch": 3, "train_loss": 0.5, "val_loss": None, "val_accuracy": 0.8},
    ]
    path = tmp_path / "run.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"event": "x", "v": NaN}\n')
    run = plot.read_run(str(path), stdin=None)
    assert run.points("train_loss") == ([1, 3], [1.0, 0.5])
    assert run.best() == (2, 0.8)  # the first epoch reaching the best
    train_line = plot.render([run]).figure.axes[0].get_lines()[0]
    assert list(train_line.get_xdata()) == [1, 3]


def test_without_matplotlib_exit_2_with_the_install_line(runs, tmp_path):
    out = tmp_path / "curves.png"
    code = "import sys; sys.modules['matplotlib'] = None; from bptrain.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "plot", str(runs["slow"]), "--out", str(out)],
        capture_output=True, text=True, env=subprocess_env(), timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert "pip install 'bptrain[plot]'" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_an_existing_out_is_kept_without_overwrite(runs, tmp_path):
    out = tmp_path / "curves.png"
    out.write_bytes(b"mine")
    assert_error(invoke("plot", runs["slow"], "--out", out), 4, str(out), "--overwrite")
    assert out.read_bytes() == b"mine"
    plotted(runs["slow"], "--out", out, "--overwrite")
    assert out.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("name", ["curves.jpg", "curves"])
def test_an_unknown_suffix_is_a_usage_error(runs, tmp_path, name):
    assert_error(invoke("plot", runs["slow"], "--out", tmp_path / name), 2, ".png, .svg, .pdf")
    assert list(tmp_path.iterdir()) == []


def test_out_is_required(runs):
    assert_error(invoke("plot", runs["slow"]), 2, "--out")


def test_a_malformed_line_is_named(runs, tmp_path):
    path = tmp_path / "run.jsonl"
    first = (runs["folder"] / "slow.jsonl").read_text().splitlines()[0]
    path.write_text(first + "\n\n{oops\n")
    assert_error(invoke("plot", path, "--out", tmp_path / "c.png"), 3, f"{path}:3")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "does not exist"),
        ("", "is empty"),
        ('{"event": "prediction", "label": 3}\n', "no epoch or eval records"),
        ('{"event": "epoch", "epoch": 2}\n{"event": "epoch", "epoch": 1}\n', "more than one run"),
        ("[1, 2]\n", ":1: a JSON list"),
    ],
)
def test_unusable_inputs_exit_3(tmp_path, content, needle):
    path = tmp_path / "run.jsonl"
    if content is not None:
        path.write_text(content)
    assert_error(invoke("plot", path, "--out", tmp_path / "c.png"), 3, str(path), needle)


def test_a_damaged_checkpoint_exits_4(runs, tmp_path):
    path = tmp_path / "run.bin"  # not called .npz: the content says it is one
    path.write_bytes(runs["slow"].read_bytes()[:200])
    assert_error(invoke("plot", path, "--out", tmp_path / "c.png"), 4, str(path))


def test_one_eval_at_a_time(runs, tmp_path):
    out = tmp_path / "c.png"
    assert_error(invoke("plot", runs["eval"], runs["slow"], "--out", out), 2, "training run")
    assert_error(invoke("plot", runs["eval"], runs["eval"], "--out", out), 2, "one eval record")
    two = tmp_path / "two.jsonl"
    two.write_text(runs["eval"].read_text() * 2)
    assert_error(invoke("plot", two, "--out", out), 2, "2 eval records (lines 1, 2)")
    assert not out.exists()
