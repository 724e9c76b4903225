"""`bptrain graph ... --format html`: the step-through page, its numbers from the real nodes,
self-contained, and driven in a real headless Chromium (the one the serve page tests use)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from bptrain.visual.seed_graphs import Tape, seed_graph
from bptrain.visual.steps import tape_steps
from bptrain.visual.steps_page import page
from cli_helpers import assert_error, invoke, records

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
HOSTILE = "</script><script>window.pwned = 1</script><!-- & \"'"


class Page(HTMLParser):
    """Every tag with its attributes, and the text of each <script> and <style>."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.styles: list[str] = []
        self.svg_text: list[str] = []
        self._open: str | None = None
        self._attrs: dict[str, str | None] = {}
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style", "text"):
            self._open, self._attrs = tag, dict(attrs)

    def handle_endtag(self, tag):
        if tag == self._open:
            self._open = None

    def handle_data(self, data):
        if self._open == "script":
            self.scripts.append((self._attrs, data))
        elif self._open == "style":
            self.styles.append(data)
        elif self._open == "text":
            self.svg_text.append(data)

    @property
    def data(self) -> dict:
        (found,) = [text for attrs, text in self.scripts if attrs.get("id") == "steps-data"]
        return json.loads(found)


def html_of(*args) -> str:
    result = invoke("graph", *args, "--format", "html")
    assert result.exit_code == 0, result.stderr
    return result.stdout


def steps_of(*args) -> list[dict]:
    return Page(html_of(*args)).data["steps"]


def terms_of(steps: list[dict], title_part: str = "Backward: ") -> list[dict[str, list[float]]]:
    """{wrt: [local, upstream, product]} for each backward node step, in order."""
    return [{t["wrt"]: t["numbers"] for t in s["terms"]} for s in steps if title_part in s["title"]]


# ---------------------------------------------------------------------------------------------
# the steps: the real nodes' numbers, in order


def test_shop_steps_are_the_seeds_numbers_forward_then_backward():
    steps = steps_of("shop")
    assert [s["phase"] for s in steps] == ["forward"] * 3 + ["backward"] * 4
    assert [s["nodes"] for s in steps[:3]] == [
        ["apple.price", "apple.count", "tax"], ["mul_apple"], ["mul_tax"],
    ]  # fmt: skip
    assert steps[1]["equation"] == "apple price = 100 × 2 = 200"
    assert steps[2]["equation"] == "price = 200 × 1.1 = 220"
    assert "dout = ∂L/∂price = 1" in steps[3]["caption"]
    mul_tax, mul_apple = terms_of(steps)
    assert mul_tax == {"∂L/∂(apple price)": [1.1, 1.0, 1.1], "∂L/∂tax": [200.0, 1.0, 200.0]}
    assert mul_apple["∂L/∂apple"] == pytest.approx([2.0, 1.1, 2.2])
    assert mul_apple["∂L/∂(apple count)"] == pytest.approx([100.0, 1.1, 110.0])
    assert [s["nodes"] for s in steps[4:6]] == [["mul_tax"], ["mul_apple"]]
    assert "∂L/∂apple = 2.2, ∂L/∂(apple count) = 110, ∂L/∂tax = 200" in steps[-1]["caption"]


def test_set_changes_the_steps_numbers():
    steps = steps_of("shop", "--set", "apple.price=120", "--set", "tax=1.08", "--set", "dout=2")
    assert steps[2]["equation"] == "price = 240 × 1.08 = 259.2"
    mul_tax, mul_apple = terms_of(steps)
    assert mul_tax["∂L/∂tax"] == [240.0, 2.0, 480.0]
    assert mul_apple["∂L/∂(apple count)"] == pytest.approx([120.0, 2.16, 259.2])
    assert mul_apple["∂L/∂apple"] == pytest.approx([2.0, 2.16, 4.32])


@pytest.mark.parametrize(
    ("example", "settings"), [("shop", ()), ("shop-oranges", ("tax=1.3",)), ("sigmoid", ("x=-2",))]
)
def test_every_backward_step_is_local_times_upstream_and_the_graphs_gradient(example, settings):
    args = [a for s in settings for a in ("--set", s)]
    steps = steps_of(example, *args)
    graph = seed_graph(example, settings)
    drawn = {edge.backward for edge in graph.edges} - {None}
    for step in steps:
        for term in step["terms"]:
            local, upstream, product = term["numbers"]
            assert product == pytest.approx(local * upstream, rel=1e-12)
            assert term["product"] in drawn  # the same number the edge carries in the picture
            # The upstream is what came back along the node's outgoing edge.
            (out,) = [e for e in graph.edges if e.source == step["nodes"][0]]
            assert term["upstream"] == out.backward


def test_sigmoid_steps_show_each_nodes_local_derivative():
    steps = steps_of("sigmoid", "--set", "dout=0.5")
    y = 1 / (1 + np.exp(-1.0))
    reciprocal, add, exp, negate = terms_of(steps)
    (local, upstream, product), = reciprocal.values()  # fmt: skip
    assert local == pytest.approx(-1 / (1 + np.exp(-1.0)) ** 2)  # −1/x² at x = 1 + e⁻¹
    assert upstream == 0.5 and product == pytest.approx(-0.5 * y**2)
    assert add == {"∂L/∂exp(-x)": [1.0, product, product]}  # + passes it on
    assert exp["∂L/∂(-x)"][0] == pytest.approx(np.exp(-1.0))  # exp's local is its output
    assert negate["∂L/∂x"] == pytest.approx([-1.0, -0.5 * y * (1 - y), 0.5 * y * (1 - y)])
    rules = [t["rule"] for s in steps for t in s["terms"]]
    assert rules[0].startswith("∂(1/a)/∂a = −1/a² = −1/1.36788² = ")
    assert "1 is a constant" in steps[-4]["caption"]  # + has no gradient for its constant 1


# ---------------------------------------------------------------------------------------------
# the file: self-contained, safe for any label, written like every other format


def assert_self_contained(text: str) -> Page:
    parsed = Page(text)
    for tag, attrs in parsed.tags:
        assert tag not in ("link", "iframe", "img", "object", "embed", "base"), tag
        assert "src" not in attrs and "srcset" not in attrs, (tag, attrs)
        for key in ("href", "xlink:href", "action", "formaction", "poster", "data"):
            value = (attrs.get(key) or "").strip()
            assert not value or value.startswith("#"), (tag, key, value)
    for css in parsed.styles:
        assert "@import" not in css
        assert all(part.startswith("#") for part in css.split("url(")[1:]), "url() to elsewhere"
    (policy,) = [
        a["content"] for t, a in parsed.tags if a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert policy.startswith("default-src 'none'") and "http" not in policy
    code = [text for attrs, text in parsed.scripts if attrs.get("type") != "application/json"]
    assert len(code) == 1 and "fetch(" not in code[0] and "XMLHttpRequest" not in code[0]
    assert "import(" not in code[0] and "http" not in code[0]
    return parsed


@pytest.mark.parametrize("example", ["shop", "shop-oranges", "sigmoid"])
def test_the_page_is_self_contained(example):
    parsed = assert_self_contained(html_of(example))
    ops = [node for node in seed_graph(example).nodes if node.kind == "op"]
    assert len(parsed.data["steps"]) == 2 * len(ops) + 3  # inputs, ops, dout, ops back, done
    assert {e.backward for e in seed_graph(example).edges if e.backward} <= set(parsed.svg_text)


def test_a_hostile_label_cannot_end_the_script_or_add_markup():
    tape = Tape()
    graph = seed_graph("shop", (), tape)
    graph.nodes[0].label = HOSTILE
    graph.title = HOSTILE
    text = page(graph, tape_steps(graph, tape))
    assert "</script><script>window.pwned" not in text
    parsed = assert_self_contained(text)
    assert len(parsed.scripts) == 2  # the data and the page's own code, nothing injected
    assert HOSTILE in parsed.data["steps"][0]["caption"]  # the JSON still holds it exactly
    assert HOSTILE in parsed.svg_text and parsed.data["title"] == HOSTILE


def test_a_hostile_config_name_stays_text(tmp_path, idx_folder):
    from cli_helpers import small_config, write_config

    name = "<img src=x onerror=window.pwned=1> & <b>"
    config = write_config(tmp_path / f"{name}.yaml", small_config(idx_folder))
    parsed = assert_self_contained(html_of(config))  # no <img>, no <b>: only text
    assert not any(tag in ("b", "img") for tag, _ in parsed.tags)
    assert parsed.data["title"].startswith(name)


def test_out_and_its_suffix_and_overwrite(tmp_path):
    out = tmp_path / "shop.html"
    result = invoke("graph", "shop", "--out", out)  # the suffix picks html
    assert result.exit_code == 0, result.stderr
    assert records(result.stdout) == [
        {"event": "graph", "source": "shop", "format": "html", "out": str(out), "nodes": 6,
         "edges": 5, "steps": 7}
    ]  # fmt: skip
    assert out.read_text(encoding="utf-8") == html_of("shop")
    before = out.read_bytes()
    assert_error(invoke("graph", "sigmoid", "--out", out), 4, "already exists")
    assert out.read_bytes() == before
    assert invoke("graph", "sigmoid", "--out", out, "--overwrite").exit_code == 0
    assert "sigmoid at x = 1" in out.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop.html"]  # no temporary left


def test_html_of_an_example_refuses_batch():
    assert_error(invoke("graph", "shop", "--format", "html", "--batch", "3"), 2, "--batch")


# ---------------------------------------------------------------------------------------------
# a network: one step per layer, from a real pass


def test_a_config_steps_through_its_layers(config_file):
    from bptrain.engine.trace import trace
    from bptrain.visual.model_source import load_source

    text = html_of(config_file)
    steps = assert_self_contained(text).data["steps"]
    assert [s["title"] for s in steps] == [
        "The input batch", "Forward: Flatten #0", "Forward: Affine #1", "Forward: ReLU #2",
        "Forward: Affine #3", "Forward: Softmax-with-Loss", "Backward starts: Softmax-with-Loss",
        "Backward: Affine #3", "Backward: ReLU #2", "Backward: Affine #1", "Backward: Flatten #0",
        "Backward done",
    ]  # fmt: skip
    affine = {t["wrt"]: t for t in steps[9]["terms"]}
    assert [t["rule"] for t in affine.values()] == [
        "dx = dout · Wᵀ", "dW = xᵀ · dout", "db = Σ dout over the batch",
    ]  # fmt: skip
    assert affine["∂L/∂x"]["local"] == "Wᵀ (32, 784)"
    assert affine["∂L/∂W"]["local"] == "xᵀ (784, 8)"
    assert affine["∂L/∂W"]["product"].startswith("dW (784, 32), ‖dW‖ = ")
    assert steps[8]["terms"][0]["rule"] == "dx = dout ⊙ [x > 0]"
    # The numbers are a real pass: ‖dout · Wᵀ‖ of the first Affine, recomputed here.
    network = load_source(str(config_file)).network
    rng = np.random.default_rng(0)
    x = rng.random((8, *network.input_shape)).astype(network.dtype)
    traced = trace(network, x, rng.integers(0, 10, 8))
    dx = traced.layers[1].grad @ network.params["1.W"].T
    assert affine["∂L/∂x"]["product"] == f"dx (8, 784), ‖dx‖ = {np.linalg.norm(dx):.4g}"
    zeros = float(np.mean(traced.layers[2].output == 0))
    assert f"{zeros:.0%} of the entries are 0" in steps[3]["caption"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, idx_folder):
    from cli_helpers import small_config, write_config

    folder = tmp_path_factory.mktemp("steps-ckpt")
    config = write_config(folder / "c.yaml", small_config(idx_folder, epochs=1))
    out = folder / "m.npz"
    result = invoke("train", config, "--out", out, "-q")
    assert result.exit_code == 0, result.stderr
    return out


def test_a_checkpoint_with_batch_steps_through_test_samples(checkpoint, tmp_path):
    out = tmp_path / "net.html"
    result = invoke("graph", checkpoint, "--batch", 5, "--out", out)
    assert result.exit_code == 0, result.stderr
    steps = assert_self_contained(out.read_text(encoding="utf-8")).data["steps"]
    assert "the first 5 test samples, shape (5, 1, 28, 28)" in steps[0]["caption"]
    assert steps[5]["equation"].startswith("L = mean of −log softmax(scores)[label] = ")


# ---------------------------------------------------------------------------------------------
# in a real headless Chromium


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip("the page tests need chromium and chromedriver "
                    "(apt-get install chromium chromium-driver)")  # fmt: skip
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--window-size=1300,900",
    ):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        try:
            yield driver
        finally:
            driver.quit()


def open_page(driver, path: Path) -> None:
    driver.get(path.resolve().as_uri())
    driver.get_log("browser")  # start each page with an empty console log
    driver.refresh()


def severe(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def state(driver) -> dict:
    """The step shown: its number, title, active nodes, the chain lines, shown edge values."""
    return driver.execute_script(
        """const q = (s) => Array.from(document.querySelectorAll(s));
        return {step: Number(document.body.dataset.step), phase: document.body.dataset.phase,
          title: document.getElementById('step-title').textContent,
          caption: document.getElementById('caption').textContent,
          equation: document.getElementById('equation').textContent,
          nodes: q('#graph .node.active').map((n) => n.dataset.node),
          edges: q('#graph .edge.active').map((e) => Number(e.dataset.edge)),
          chains: q('#terms .chain').map((c) => c.textContent),
          terms: q('#terms .chain').map((c) => ['local', 'upstream', 'product'].map(
            (part) => c.querySelector('.' + part).textContent)),
          shown: q('#graph .value.shown').map((v) => v.textContent),
          prev: document.getElementById('prev').disabled,
          next: document.getElementById('next').disabled,
          slider: Number(document.getElementById('slider').value)};"""
    )


def press(driver, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()


def test_keys_buttons_and_slider_step_through_the_shop(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    out = tmp_path / "shop.html"
    assert invoke("graph", "shop", "--out", out).exit_code == 0
    open_page(browser, out)
    first = state(browser)
    assert first["step"] == 0 and first["phase"] == "forward" and first["title"] == "The inputs"
    assert sorted(first["nodes"]) == ["apple.count", "apple.price", "tax"]
    assert first["prev"] and not first["next"]
    assert sorted(first["shown"]) == ["1.1", "100", "2"]  # only the inputs' values so far
    press(browser, Keys.ARROW_RIGHT)
    step = state(browser)
    assert step["nodes"] == ["mul_apple"] and step["equation"] == "apple price = 100 × 2 = 200"
    assert "200" in step["shown"] and "220" not in step["shown"]
    browser.find_element("id", "next").click()
    assert state(browser)["equation"] == "price = 200 × 1.1 = 220"
    press(browser, Keys.ARROW_RIGHT)
    press(browser, Keys.ARROW_RIGHT)  # the × before the tax, backward
    step = state(browser)
    assert (step["phase"], step["nodes"], step["slider"]) == ("backward", ["mul_tax"], 4)
    assert step["chains"] == ["1.1 × 1 = 1.1", "200 × 1 = 200"]
    assert sorted(step["edges"]) == [2, 3, 4]
    assert "2.2" not in step["shown"] and "1.1" in step["shown"]
    press(browser, Keys.END)
    last = state(browser)
    assert last["step"] == 6 and last["title"] == "Backward done: the inputs' gradients"
    assert last["next"] and "∂L/∂apple = 2.2" in last["caption"]
    assert {"2.2", "110", "200"} <= set(last["shown"])
    press(browser, Keys.ARROW_LEFT)
    assert state(browser)["chains"] == ["2 × 1.1 = 2.2", "100 × 1.1 = 110"]
    browser.find_element("id", "prev").click()
    assert state(browser)["nodes"] == ["mul_tax"]
    press(browser, Keys.HOME)
    assert state(browser)["step"] == 0
    slider = browser.find_element("id", "slider")
    ActionChains(browser).move_to_element_with_offset(slider, slider.rect["width"] // 2 - 2, 0)\
        .click().perform()  # fmt: skip
    assert state(browser)["step"] == 6  # the slider's far end: the last step
    slider.send_keys(Keys.ARROW_LEFT)  # the slider's own keys move one step, and once only
    step = state(browser)
    assert step["step"] == 5 and step["nodes"] == ["mul_apple"]
    assert severe(browser) == []


def test_the_sigmoid_page_shows_minus_one_over_x_squared(browser, tmp_path):
    from selenium.webdriver.common.keys import Keys

    out = tmp_path / "sigmoid.html"
    assert invoke("graph", "sigmoid", "--out", out).exit_code == 0
    open_page(browser, out)
    for _ in range(6):
        press(browser, Keys.ARROW_RIGHT)
    step = state(browser)
    assert step["nodes"] == ["reciprocal"] and step["phase"] == "backward"
    assert step["chains"] == ["-0.534447 × 1 = -0.534447"]
    rule = browser.find_element("css selector", "#terms .rule").text
    assert rule == "∂(1/a)/∂a = −1/a² = −1/1.36788² = -0.534447"
    press(browser, Keys.END)
    assert "dout · y · (1 − y)" in state(browser)["caption"]
    assert severe(browser) == []


def test_a_hostile_label_stays_text_in_the_browser(browser, tmp_path):
    tape = Tape()
    graph = seed_graph("shop", (), tape)
    graph.nodes[0].label = HOSTILE
    out = tmp_path / "hostile.html"
    out.write_text(page(graph, tape_steps(graph, tape)), encoding="utf-8")
    open_page(browser, out)
    assert browser.execute_script("return window.pwned === undefined")
    assert HOSTILE in state(browser)["caption"]
    labels = browser.execute_script(
        "return Array.from(document.querySelectorAll('#graph .node .label'), (t) => t.textContent)"
    )
    assert HOSTILE in labels
    assert severe(browser) == []


def test_a_checkpoints_page_runs_every_step_without_errors(browser, checkpoint, tmp_path):
    from selenium.webdriver.common.keys import Keys

    out = tmp_path / "net.html"
    assert invoke("graph", checkpoint, "--out", out).exit_code == 0
    titles = [s["title"] for s in Page(out.read_text(encoding="utf-8")).data["steps"]]
    open_page(browser, out)
    seen = [state(browser)["title"]]
    for _ in titles[1:]:
        press(browser, Keys.ARROW_RIGHT)
        seen.append(state(browser)["title"])
    assert seen == titles
    step = state(browser)
    assert step["phase"] == "backward" and step["nodes"] == ["input"] and step["next"]
    browser.find_element("id", "prev").click()  # Flatten #0 backward
    press(browser, Keys.ARROW_LEFT)  # Affine #1 backward: dx, dW, db
    shown = state(browser)["terms"]
    data = Page(out.read_text(encoding="utf-8")).data["steps"][-3]
    assert data["title"] == "Backward: Affine #1"
    assert shown == [[t["local"], t["upstream"], t["product"]] for t in data["terms"]]
    assert shown[0][0] == "Wᵀ (32, 784)" and shown[1][0] == "xᵀ (784, 8)"
    assert severe(browser) == []
