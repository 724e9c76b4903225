"""`bptrain serve`: the page in a real headless browser (Debian's chromium and chromium-driver,
driven by Selenium), drawing with real pointer events.

BPTRAIN_UPDATE_DOCS=1 writes the README's screenshot (docs/serve.png) from a `cnn` trained on
the real MNIST (../shared/data/mnist, or the checkpoint BPTRAIN_DOCS_CHECKPOINT names);
otherwise the screenshot goes to the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import invoke, subprocess_env, write_config
from serve_helpers import (  # noqa: F401  (fixtures)
    Server,
    cnn_config,
    digit_set_fixture,
    png,
    predict_png,
    serve_checkpoint_fixture,
)

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(
        "the page tests need chromium and chromedriver (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

ROOT = Path(__file__).resolve().parents[2]
MNIST = ROOT.parent / "shared" / "data" / "mnist"
WIDTH = 1440

# A "3" and a "2", as control points on the pad (0..1); smoothed into strokes.
THREE = [(0.3, 0.22), (0.5, 0.16), (0.68, 0.24), (0.62, 0.42), (0.45, 0.48), (0.64, 0.56),
         (0.7, 0.72), (0.55, 0.84), (0.32, 0.8)]  # fmt: skip
TWO = [(0.3, 0.3), (0.42, 0.17), (0.6, 0.17), (0.68, 0.3), (0.6, 0.5), (0.42, 0.67), (0.3, 0.8),
       (0.5, 0.79), (0.72, 0.8)]  # fmt: skip


def smooth(points, steps=4):
    """A Catmull-Rom curve through the points."""
    p = [points[0], *points, points[-1]]
    out = []
    for i in range(1, len(p) - 2):
        for s in range(steps):
            t = s / steps
            out.append(tuple(
                0.5 * (2 * p[i][k] + (-p[i - 1][k] + p[i + 1][k]) * t
                       + (2 * p[i - 1][k] - 5 * p[i][k] + 4 * p[i + 1][k] - p[i + 2][k]) * t**2
                       + (-p[i - 1][k] + 3 * p[i][k] - 3 * p[i + 1][k] + p[i + 2][k]) * t**3)
                for k in (0, 1)
            ))  # fmt: skip
    return [*out, points[-1]]


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--window-size={WIDTH},1000",
    ):  # fmt: skip
        options.add_argument(argument)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        try:
            yield driver
        finally:
            driver.quit()


@pytest.fixture(scope="module")
def server(serve_checkpoint):
    with Server(serve_checkpoint) as running:
        yield running


def open_page(driver, url):
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 10, poll_frequency=0.02).until(
        lambda d: "parameters" in d.find_element("id", "model").text
    )


def wait_for(driver, condition, timeout=10):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(
        lambda d: d.execute_script(f"return {condition}")
    )


def draw(driver, points, kind="mouse", pressure=None):
    """One stroke through `points` (0..1 of the pad) with a real mouse, finger or pen."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    kinds = {"mouse": interaction.POINTER_MOUSE, "touch": interaction.POINTER_TOUCH,
             "pen": interaction.POINTER_PEN}  # fmt: skip
    box = driver.find_element("id", "pad").rect

    def at(x, y):
        return box["x"] + x * box["width"], box["y"] + y * box["height"]

    actions = ActionBuilder(driver, mouse=PointerInput(kinds[kind], kind), duration=0)
    actions.pointer_action.move_to_location(*at(*points[0]))
    actions.pointer_action.pointer_down(pressure=pressure)
    for x, y in points[1:]:
        actions.pointer_action.move_to_location(*at(x, y), pressure=pressure)
    actions.pointer_action.pointer_up()
    actions.perform()


def settled(driver, state="ready"):
    """Wait until the newest drawing's answer is shown."""
    wait_for(
        driver,
        f"document.body.dataset.pending === '0' && document.body.dataset.state === '{state}'",
    )


def results(driver):
    return int(driver.execute_script("return document.body.dataset.results || '0'"))


def pixels(driver, canvas_id):
    """(lit, coloured) pixel counts of a canvas: not black, and not grey."""
    return driver.execute_script(
        """const c = document.getElementById(arguments[0]);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let lit = 0, coloured = 0;
        for (let i = 0; i < d.length; i += 4) {
          if (d[i] + d[i + 1] + d[i + 2] > 40) lit++;
          if (Math.abs(d[i] - d[i + 2]) > 40) coloured++;
        }
        return [lit, coloured];""",
        canvas_id,
    )


def test_drawing_shows_the_prediction_the_layers_and_the_heat_map(browser, server):
    open_page(browser, server.url)
    assert browser.find_element("tag name", "body").get_attribute("data-state") == "empty"
    draw(browser, smooth(THREE))
    settled(browser)
    label = browser.find_element("id", "prediction").get_attribute("data-label")
    assert browser.find_element("id", "label").text == label
    top = browser.find_elements("css selector", "#top li")
    assert len(top) == 3 and top[0].find_element("class name", "name").text == label
    assert pixels(browser, "seen")[0] > 40  # the 28x28 digit the network saw
    _, coloured = pixels(browser, "heatmap")
    assert coloured > 40  # blue and red: the input gradient
    layers = browser.find_elements("css selector", "#layers .layer")
    assert [row.get_attribute("data-type") for row in layers] == [
        "conv2d", "relu", "max_pool2d", "flatten", "affine", "relu", "affine",
    ]  # fmt: skip
    assert len(layers[0].find_elements("tag name", "canvas")) == 6  # its feature maps
    assert "zeros" in layers[1].text
    assert len(browser.find_elements("css selector", "#norms .norm")) == 8  # 7 layers + input


def test_touch_and_pen_draw_and_undo_and_clear_take_strokes_away(browser, server):
    open_page(browser, server.url)
    draw(browser, smooth(TWO), kind="touch")
    draw(browser, [(0.2, 0.5), (0.5, 0.52), (0.8, 0.55)], kind="pen", pressure=0.9)
    wait_for(browser, "document.body.dataset.strokes === '2'")
    settled(browser)
    assert pixels(browser, "pad")[0] > 1000
    browser.find_element("id", "undo").click()
    wait_for(browser, "document.body.dataset.strokes === '1'")
    browser.find_element("id", "clear").click()
    settled(browser, "empty")
    assert pixels(browser, "pad")[0] == 0
    assert browser.find_element("id", "label").text == "?"


def chip(driver, text):
    """The class chip (re-made with every result) that reads `text`."""
    return next(c for c in driver.find_elements("css selector", "#classes .chip") if c.text == text)


def test_clicking_a_class_shows_the_gradient_for_it(browser, server):
    open_page(browser, server.url)
    draw(browser, smooth(THREE))
    settled(browser)
    label = browser.find_element("id", "prediction").get_attribute("data-label")
    other = str((int(label) + 1) % 10)
    before = results(browser)
    chip(browser, other).click()
    wait_for(browser, f"Number(document.body.dataset.results) > {before}")
    settled(browser)
    assert chip(browser, other).get_attribute("aria-pressed") == "true"
    assert f"for class {other}" in browser.find_element("id", "grad-class").text
    assert browser.find_element("id", "prediction").get_attribute("data-label") == label
    chip(browser, "auto").click()  # back to the predicted class
    wait_for(browser, f"Number(document.body.dataset.results) > {before + 1}")
    settled(browser)
    assert "predicted" in browser.find_element("id", "grad-class").text


def test_an_uploaded_file_is_predicted_as_the_api_predicts_it(browser, server, digit_set, tmp_path):
    images, _ = digit_set
    data = png(images[5])
    path = tmp_path / "digit.png"
    path.write_bytes(data)
    expected = predict_png(server.url, data)
    open_page(browser, server.url)
    browser.find_element("id", "upload").send_keys(str(path))
    settled(browser)
    assert browser.find_element("id", "prediction").get_attribute("data-label") == str(
        expected["label"]
    )
    assert "digit.png" in browser.find_element("id", "status").text


def shown_loss(driver):
    """The numbers of the loss line beside the heat map: {label: value}."""
    lines = driver.find_element("id", "loss").text.splitlines()
    return dict(line.rsplit(" = ", 1) for line in lines if " = " in line)


def test_the_loss_line_is_minus_log_p_without_label_smoothing(browser, server, digit_set, tmp_path):
    images, _ = digit_set
    path = tmp_path / "digit.png"
    path.write_bytes(png(images[5]))
    api = predict_png(server.url, path.read_bytes(), "?details=1")
    open_page(browser, server.url)
    browser.find_element("id", "upload").send_keys(str(path))
    settled(browser)
    shown = shown_loss(browser)
    details = api["details"]
    assert details["label_smoothing"] == 0.0
    assert details["neg_log_p"] == pytest.approx(details["loss"], rel=1e-4)
    assert details["neg_log_p"] == pytest.approx(-np.log(api["confidence"]), rel=1e-4)
    key = f"loss −log p({api['class_name']})"
    assert set(shown) == {key, "‖∂L/∂x‖"}
    assert float(shown[key]) == pytest.approx(details["loss"], rel=1e-3, abs=1e-4)


@pytest.fixture(scope="module")
def smoothed_checkpoint(tmp_path_factory, idx_folder):
    """The serve tests' conv net trained with label smoothing 0.1."""
    folder = tmp_path_factory.mktemp("smoothed")
    config = cnn_config(idx_folder)
    config["model"]["loss"] = {"type": "softmax_with_loss", "label_smoothing": 0.1}
    out = folder / "smoothed.npz"
    result = invoke("train", write_config(folder / "c.yaml", config), "--out", out, "-q")
    assert result.exit_code == 0, result.stderr
    return out


def test_with_label_smoothing_the_loss_line_says_so_and_shows_minus_log_p(
    browser, smoothed_checkpoint, digit_set, tmp_path
):
    images, _ = digit_set
    path = tmp_path / "digit.png"
    path.write_bytes(png(images[5]))
    with Server(smoothed_checkpoint) as running:
        api = predict_png(running.url, path.read_bytes(), "?details=1")
        open_page(browser, running.url)
        browser.find_element("id", "upload").send_keys(str(path))
        settled(browser)
        shown = shown_loss(browser)
    details, name = api["details"], api["class_name"]
    assert details["label_smoothing"] == 0.1
    # -log p is the confidence's; the smoothed loss is larger (it also wants the other classes)
    assert details["neg_log_p"] == pytest.approx(-np.log(api["confidence"]), rel=1e-4)
    assert details["loss"] > details["neg_log_p"]
    assert set(shown) == {"loss (label smoothing 0.1)", f"−log p({name})", "‖∂L/∂x‖"}
    assert float(shown["loss (label smoothing 0.1)"]) == pytest.approx(details["loss"], abs=1e-4)
    assert float(shown[f"−log p({name})"]) == pytest.approx(details["neg_log_p"], abs=1e-4)


def docs_checkpoint(folder: Path) -> Path:
    """A `cnn` trained 2 epochs on the real MNIST, for the README's screenshot."""
    given = os.environ.get("BPTRAIN_DOCS_CHECKPOINT")
    if given:
        return Path(given)
    if not (MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the docs screenshot needs the real MNIST in {MNIST}")
    out = folder / "cnn.npz"
    subprocess.run(
        [sys.executable, "-m", "bptrain", "-q", "train", "cnn", "--epochs", "2", "--data-dir",
         str(MNIST), "--offline", "--out", str(out)],
        check=True, env=subprocess_env(), timeout=600,
    )  # fmt: skip
    return out


def test_the_screenshot_of_a_drawn_digit(browser, server, tmp_path):
    docs = os.environ.get("BPTRAIN_UPDATE_DOCS") == "1"
    target = ROOT / "docs" / "serve.png" if docs else tmp_path / "serve.png"
    with Server(docs_checkpoint(tmp_path)) if docs else server as running:
        open_page(browser, running.url)
        draw(browser, smooth(THREE))
        settled(browser)
        wait_for(browser, "document.getElementById('heatmap').dataset.drawn === '1'")
        height = browser.execute_script("return document.documentElement.scrollHeight")
        chrome = browser.execute_script("return window.outerHeight - window.innerHeight")
        browser.set_window_size(WIDTH, height + chrome)  # the whole page, and no more
        wait_for(browser, f"document.documentElement.clientHeight >= {height}")
        target.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(target))
        browser.set_window_size(WIDTH, 1000)
    with Image.open(target) as shot:
        assert shot.width == WIDTH and shot.height >= height
        assert np.asarray(shot.convert("L")).std() > 10  # a picture, not a blank page
