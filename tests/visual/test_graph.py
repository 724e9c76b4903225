"""`bptrain graph`: the seed's graphs from the real nodes, networks, formats and their errors."""

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from bptrain.engine.layers import ExpLayer, ReciprocalLayer
from bptrain.visual.graph import to_dot
from bptrain.visual.seed_graphs import seed_graph
from cli_helpers import assert_error, invoke, records, subprocess_env

HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot is not installed")

EDGE = re.compile(r'"([^"]+)" -> "([^"]+)"(?: \[label=<(.*)>\])?;')
FONT = re.compile(r'<font color="([^"]+)">([^<]*)</font>')


def dot_edges(text: str) -> dict[tuple[str, str], dict[str, str]]:
    """(source, target) -> {colour: value} for every edge of our DOT output."""
    edges = {}
    for source, target, label in EDGE.findall(text):
        edges[(source, target)] = {colour: value for colour, value in FONT.findall(label or "")}
    return edges


def values(edges, source, target):
    """(forward, backward) as printed on the edge (black, red)."""
    found = edges[(source, target)]
    return found.get("#1f1f1f"), found.get("#d62728")


def test_shop_is_the_seeds_figure():
    result = invoke("graph", "shop")
    assert result.exit_code == 0, result.stderr
    edges = dot_edges(result.stdout)
    assert values(edges, "apple.price", "mul_apple") == ("100", "2.2")
    assert values(edges, "apple.count", "mul_apple") == ("2", "110")
    assert values(edges, "mul_apple", "mul_tax") == ("200", "1.1")
    assert values(edges, "tax", "mul_tax") == ("1.1", "200")
    assert values(edges, "mul_tax", "price") == ("220", "1")


def test_shop_with_oranges_is_the_seeds_second_figure():
    edges = dot_edges(invoke("graph", "shop-oranges").stdout)
    assert values(edges, "orange.price", "mul_orange") == ("150", "3.3")
    assert values(edges, "orange.count", "mul_orange") == ("3", "165")
    assert values(edges, "add_fruit", "mul_tax") == ("650", "1.1")
    assert values(edges, "tax", "mul_tax") == ("1.1", "650")
    assert values(edges, "mul_tax", "price") == ("715", "1")
    assert values(edges, "mul_orange", "add_fruit") == ("450", "1.1")  # + passes dout on


@pytest.mark.parametrize(("price", "count", "tax"), [(120, 2, 1.1), (100, 5, 1.08), (3, 7, 2)])
def test_changed_inputs_change_every_number(price, count, tax):
    result = invoke(
        "graph", "shop", "--format", "json",
        "--set", f"apple.price={price}", "--set", f"apple.count={count}", "--set", f"tax={tax}",
    )  # fmt: skip
    graph = json.loads(result.stdout)
    forward, backward = graph["values"]["forward"], graph["values"]["backward"]
    assert forward["price"] == pytest.approx(price * count * tax)
    assert backward["apple.price"] == pytest.approx(count * tax)
    assert backward["apple.count"] == pytest.approx(price * tax)
    assert backward["tax"] == pytest.approx(price * count)
    assert f"{count:g} apples at {price:g}" in graph["title"]


def test_dout_scales_the_backward_pass_only():
    graph = json.loads(invoke("graph", "shop", "--format", "json", "--set", "dout=2").stdout)
    assert graph["values"]["forward"]["price"] == pytest.approx(220)
    assert graph["values"]["backward"]["apple.price"] == pytest.approx(4.4)


@pytest.mark.parametrize("x", [1.0, -3.5, 0.0, 12.0])
def test_sigmoid_graph_backward_is_dout_y_one_minus_y(x):
    result = invoke("graph", "sigmoid", "--x", x, "--set", "dout=0.5", "--format", "json")
    v = json.loads(result.stdout)["values"]
    y = 1 / (1 + np.exp(-x))
    assert v["forward"]["y"] == pytest.approx(y)
    assert v["backward"]["x"] == pytest.approx(0.5 * y * (1 - y))
    assert v["sigmoid_layer_backward"] == pytest.approx(v["backward"]["x"])
    assert v["forward"]["exp"] == pytest.approx(np.exp(-x))
    assert v["backward"]["denominator"] == pytest.approx(-0.5 * y**2)  # the "/" node


def test_sigmoid_graph_shows_its_check_in_the_caption():
    text = invoke("graph", "sigmoid").stdout
    assert "dout · y · (1 − y) = 1 · 0.731059 · 0.268941 = 0.196612" in text
    edges = dot_edges(text)
    assert values(edges, "x", "negate") == ("1", "0.196612")
    assert values(edges, "minus_one", "negate") == ("-1", None)  # a constant: no derivative


def test_unary_nodes_match_numerical_derivatives():
    x = np.array([0.3, 1.7, 4.0])
    for kind in (ExpLayer, ReciprocalLayer):
        node = kind()
        node.forward(x)
        analytic = node.backward(np.full(3, 2.0))
        numeric = 2.0 * (kind().forward(x + 1e-6) - kind().forward(x - 1e-6)) / 2e-6
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["graph", "shop", "--set", "apple.prize=3"], "did you mean 'apple.price'"),
        (["graph", "shop", "--set", "tax=lots"], "expected a finite number"),
        (["graph", "shop", "--set", "tax=nan"], "expected a finite number"),
        (["graph", "sigmoid", "--x", "800"], "overflows past |x| = 709"),
        (["graph", "shop", "--x", "1"], "--x is the sigmoid example's input"),
        (["graph", "shop", "--batch", "3"], "--batch traces a network"),
        (["graph", "shop", "--out", "shop.jpeg"], "cannot tell the format"),
        (["graph", "mlp", "--batch", "3"], "--batch needs a checkpoint"),
        (["graph", "no-such-thing"], "no-such-thing"),
    ],
)
def test_bad_requests_exit_2(args, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_error(invoke(*args), 2, needle)


def test_mermaid_is_a_flowchart_with_both_values():
    text = invoke("graph", "shop", "--format", "mermaid").stdout
    assert "\nflowchart LR\n" in text
    arrows = re.findall(r'-->\|"([^"]*)"\| ', text)
    assert "→ 220<br/>← 1" in arrows and "→ 100<br/>← 2.2" in arrows
    assert len(arrows) == 5


@needs_dot
@pytest.mark.parametrize("example", ["shop", "shop-oranges", "sigmoid"])
def test_dot_output_parses_and_renders_as_svg(example, tmp_path):
    out = tmp_path / f"{example}.svg"
    result = invoke("graph", example, "--out", out)
    assert result.exit_code == 0, result.stderr
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    texts = {t.text for t in root.iter() if t.tag.endswith("text")}
    graph = seed_graph(example)
    assert {e.backward for e in graph.edges if e.backward} <= texts  # every derivative drawn
    assert records(result.stdout)[0] | {"out": None} == {
        "event": "graph", "source": example, "format": "svg", "out": None,
        "nodes": len(graph.nodes), "edges": len(graph.edges),
    }  # fmt: skip


@needs_dot
def test_png_and_pdf_through_dot(tmp_path):
    png, pdf = tmp_path / "g.png", tmp_path / "g.pdf"
    assert invoke("graph", "shop-oranges", "--out", png).exit_code == 0
    assert invoke("graph", "sigmoid", "--format", "pdf", "--out", pdf).exit_code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_existing_out_is_not_replaced_without_overwrite(tmp_path):
    out = tmp_path / "g.dot"
    out.write_text("mine")
    assert_error(invoke("graph", "shop", "--out", out), 4, "already exists")
    assert out.read_text() == "mine"
    assert invoke("graph", "shop", "--out", out, "--overwrite").exit_code == 0
    assert out.read_text() == to_dot(seed_graph("shop"))
    assert [p.name for p in tmp_path.iterdir()] == ["g.dot"]  # no temp file left behind


def test_without_dot_images_fail_with_the_install_line_and_text_formats_work(tmp_path):
    env = subprocess_env() | {"PATH": str(tmp_path)}  # a PATH with no `dot` on it
    run = [sys.executable, "-m", "bptrain", "graph", "shop"]
    failed = subprocess.run([*run, "--format", "svg"], env=env, capture_output=True, text=True)
    assert failed.returncode == 2 and failed.stdout == ""
    assert "apt install graphviz" in failed.stderr and "--format dot or mermaid" in failed.stderr
    assert failed.stderr.count("Error:") == 1
    works = subprocess.run([*run, "--format", "mermaid"], env=env, capture_output=True, text=True)
    assert works.returncode == 0 and "flowchart LR" in works.stdout


# ---------------------------------------------------------------------------------------------
# networks


def test_a_config_is_drawn_as_its_layer_stack(config_file):
    graph = json.loads(invoke("graph", config_file, "--format", "json").stdout)
    labels = [node["label"] for node in graph["nodes"]]
    assert labels == ["input (1, 28, 28)", "Flatten", "Affine", "ReLU", "Affine",
                      "Softmax-with-Loss", "L"]  # fmt: skip
    affine = graph["nodes"][2]
    assert affine["lines"] == ["#1 → (32,)", f"{784 * 32 + 32:,} parameters"]
    assert graph["values"] == {}  # nothing traced without --batch


def test_set_changes_the_drawn_config(config_file):
    graph = json.loads(
        invoke("graph", config_file, "--set", "model.layers[1].units=7", "--format", "json").stdout
    )
    assert graph["nodes"][2]["lines"][0] == "#1 → (7,)"


def test_a_stack_that_cannot_be_built_names_the_layer(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "model:\n  layers:\n    - {type: flatten}\n    - {type: conv2d, filters: 4}\n"
        "    - {type: affine, units: 10}\n"
    )
    for command in (["graph", bad], ["summary", bad], ["train", bad, "--print-config"]):
        assert_error(invoke(*command), 2, "bad.yaml:4: model.layers[1]: layer 1 (conv2d)")


@pytest.fixture
def trained(tmp_path, config_file):
    out = tmp_path / "m.npz"
    result = invoke("train", config_file, "--set", "train.epochs=1", "--out", out)
    assert result.exit_code == 0, result.stderr
    return out


def test_a_checkpoint_with_batch_shows_a_real_pass(trained, idx_folder):
    from bptrain import data
    from bptrain.run.model import load_model

    result = invoke("graph", trained, "--batch", 40, "--format", "json")
    assert result.exit_code == 0, result.stderr
    stats = json.loads(result.stdout)["values"]
    assert stats["samples"] == 40
    # The ReLU's share of zeros, recomputed here from the checkpoint and the same 40 samples.
    model = load_model(str(trained))
    x = data.load("idx", idx_folder, splits=("test",)).x_test[:40]
    hidden = model.network.layers[1].forward(model.network.layers[0].forward(x))
    relu = stats["layers"][2]
    assert relu["activation"]["zeros"] == pytest.approx(np.mean(hidden <= 0))
    assert relu["params"] == {}
    w = stats["layers"][1]["params"]["W"]
    assert w["norm"] == pytest.approx(np.linalg.norm(model.network.params["1.W"]), rel=1e-5)
    assert w["grad_norm"] > 0
    dot_text = invoke("graph", trained, "--batch", 40).stdout
    assert "‖∂L‖" in dot_text and "zeros" in dot_text and "one forward and backward" in dot_text


def test_a_checkpoint_cannot_take_set(trained):
    assert_error(invoke("graph", trained, "--set", "seed=1"), 2, "a checkpoint's network is fixed")


def test_a_dead_layer_is_highlighted():
    from bptrain.engine.network import Network
    from bptrain.engine.trace import trace
    from bptrain.visual.network_graph import network_graph

    specs = [{"type": "affine", "units": 6}, {"type": "relu"}, {"type": "affine", "units": 3}]
    net = Network.from_specs(specs, (4,), rng=np.random.default_rng(0))
    net.params["0.b"][...] = -100  # every ReLU input negative: the layer is dead
    x = np.random.default_rng(1).random((8, 4)).astype(np.float32)
    stats = trace(net, x, np.arange(8) % 3).stats()
    assert stats["layers"][1]["activation"]["dead_units"] == 1.0
    graph = network_graph(net, "t", stats)
    assert [n.warn for n in graph.nodes if n.kind == "layer"] == [False, True, False, False]
    assert "fde2e1" in to_dot(graph)


@needs_dot
def test_a_traced_network_renders_through_dot(trained, tmp_path):
    out = tmp_path / "net.svg"
    result = invoke("graph", trained, "--batch", 20, "--out", out)
    assert result.exit_code == 0, result.stderr
    texts = [t.text or "" for t in ET.parse(out).getroot().iter() if t.tag.endswith("text")]
    assert "Softmax-with-Loss" in texts and any(t.startswith("‖∂L‖") for t in texts)
