"""`bptrain serve`: the JSON API through a real server on a free loopback port.

The server is a real `bptrain serve` process; requests are plain HTTP (urllib, raw sockets).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

from cli_helpers import invoke, records, subprocess_env
from image_helpers import png_claiming
from serve_helpers import (  # noqa: F401
    Server,
    digit_set_fixture,
    png,
    predict_png,
    request,
    serve_checkpoint_fixture,
)

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def server(serve_checkpoint):
    with Server(serve_checkpoint) as running:
        yield running


@pytest.fixture(scope="module")
def digit_pngs(digit_set):
    images, labels = digit_set
    return [png(image) for image in images[:12]], labels[:12]


def float64_engine(checkpoint):
    """The checkpoint's model rebuilt in float64, with the same weights."""
    from bptrain.engine.network import Network
    from bptrain.run.model import load_model
    from bptrain.serve.inference import Engine

    engine = Engine.load(str(checkpoint))
    model = engine.model
    network = Network.from_specs(
        model.config.model.layers, model.info.input_shape, model.config.model.loss,
        dtype=np.float64, num_classes=model.info.num_classes,
    )  # fmt: skip
    network.assign(load_model(str(checkpoint)).network.arrays)
    return replace(engine, model=replace(model, network=network))


def numerical_gradient(network, x, target, pixels, h=1e-6):
    """Central differences of the loss at `pixels` ((row, col) of the (H, W) input); None at a
    kink (a ReLU or a max-pool tie that the step flips: the one-sided slopes differ there)."""
    t = np.array([target])

    def loss(r, c, step):
        moved = x.astype(np.float64)
        moved[r, c] += step
        return network.loss(moved[None, None], t)

    out = []
    for r, c in pixels:
        up, here, down = loss(r, c, h), loss(r, c, 0.0), loss(r, c, -h)
        forward, backward = (up - here) / h, (here - down) / h
        kink = abs(forward - backward) > 1e-4 * max(abs(forward) + abs(backward), 1e-3)
        out.append(None if kink else (up - down) / (2 * h))
    return out


# --------------------------------------------------------------------- what the API returns


def test_a_test_digit_gets_the_record_predict_prints(
    server, serve_checkpoint, tmp_path, digit_pngs
):
    pngs, _ = digit_pngs
    for n, data in enumerate(pngs[:4]):
        path = tmp_path / f"{n}.png"
        path.write_bytes(data)
        result = invoke("predict", serve_checkpoint, path, "--top-k", "3")
        assert result.exit_code == 0, result.stderr
        (printed,) = records(result.stdout)
        served = predict_png(server.url, data, f"?name={path}")
        assert served == printed  # the very record, name and all
        detailed = predict_png(server.url, data, "?details=1")
        assert detailed["label"] == printed["label"]
        assert detailed["probabilities"] == pytest.approx(printed["probabilities"], abs=1e-6)


def test_details_hold_every_layer_the_input_and_its_gradient(server, digit_pngs):
    status, model, _ = request(f"{server.url}api/model")
    assert status == 200 and model["event"] == "model"
    assert model["input_shape"] == [1, 28, 28] and model["preprocess"] == "digits"
    assert [layer["type"] for layer in model["layers"]] == [
        "conv2d", "relu", "max_pool2d", "flatten", "affine", "relu", "affine",
    ]  # fmt: skip
    answer = predict_png(server.url, digit_pngs[0][0], "?details=1")
    details = answer["details"]
    assert details["class"] == answer["label"]
    assert np.array(details["input"]["pixels"]).shape == (28, 28)
    gradient = np.array(details["input_gradient"]["values"])
    assert gradient.shape == tuple(model["input_shape"][1:]) == (28, 28)
    assert details["input_gradient"]["norm"] == pytest.approx(np.linalg.norm(gradient), rel=1e-6)
    assert details["input_gradient"]["max_abs"] == pytest.approx(np.abs(gradient).max())
    layers = details["layers"]
    assert [layer["output_shape"] for layer in layers] == [
        m["output_shape"] for m in model["layers"]
    ]
    for layer in layers:
        picture = layer["picture"]
        shown = np.frombuffer(base64.b64decode(picture["data"]), np.uint8)
        assert shown.size == np.prod(picture["shape"])
        assert "norm" in layer["gradient"] and "mean" in layer["activation"]
        if layer["type"] == "relu":
            assert 0 <= layer["activation"]["zeros"] <= 1
        if layer["type"] in ("conv2d", "affine"):
            assert layer["params"]["W"]["grad_norm"] > 0
    maps = layers[0]["picture"]
    assert maps["kind"] == "maps" and maps["channels"] == 6 and maps["shape"] == [6, 24, 24]
    assert layers[4]["picture"]["kind"] == "strip" and layers[4]["picture"]["units"] == 24
    assert len(json.dumps(answer)) < 60_000  # small enough to send as you draw


def test_a_chosen_class_gets_its_own_gradient(server, digit_pngs):
    data = digit_pngs[0][0]
    predicted = predict_png(server.url, data, "?details=1")
    other = (predicted["label"] + 1) % 10
    chosen = predict_png(server.url, data, f"?details=1&class={other}")
    assert chosen["label"] == predicted["label"]  # the prediction stays; the gradient changes
    assert chosen["details"]["class"] == other
    assert chosen["details"]["loss"] > predicted["details"]["loss"]
    a = np.array(chosen["details"]["input_gradient"]["values"])
    b = np.array(predicted["details"]["input_gradient"]["values"])
    assert not np.allclose(a, b)


def test_the_input_gradient_is_the_numerical_gradient(server, serve_checkpoint, digit_pngs):
    """Backprop's dL/dx against central differences of the loss of the preprocessed input."""
    from bptrain.predict.decode import read_bytes
    from bptrain.predict.preprocess import preprocess

    engine = float64_engine(serve_checkpoint)
    network = engine.model.network
    data = digit_pngs[0][0]
    (item,) = read_bytes(data, "digit")
    x = preprocess(item.pixels, engine.style, engine.size).astype(np.float64)
    for target in (None, 3):
        exact = engine.infer(item, x, details=True, target=target)["details"]
        k = exact["class"]
        analytic = np.array(exact["input_gradient"]["values"])
        rng = np.random.default_rng(0)
        biggest = np.argsort(-np.abs(analytic).ravel())[:6]
        anywhere = rng.choice(analytic.size, 6, replace=False)
        pixels = [divmod(int(i), 28) for i in np.concatenate([biggest, anywhere])]
        numeric = numerical_gradient(network, x, k, pixels)
        checked = [(analytic[p], n) for p, n in zip(pixels, numeric, strict=True) if n is not None]
        assert len(checked) >= 8, numeric  # most points are no kink
        picked, numeric = np.array(checked).T
        scale = np.abs(analytic).max()
        assert np.allclose(picked, numeric, rtol=1e-5, atol=1e-7 * scale), (picked, numeric)
        # The server's float32 network gives the same gradient, to float32 precision.
        served = predict_png(server.url, data, f"?details=1&class={k}")["details"]
        assert np.allclose(np.array(served["input_gradient"]["values"]), analytic,
                           rtol=1e-3, atol=1e-4 * scale)  # fmt: skip


# --------------------------------------------------------------------- bad requests


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def json_body(value):
    return json.dumps(value).encode()


BAD = [
    ("not an image", b"hello, world", "image/png", "", 400),
    ("a truncated PNG", None, "image/png", "", 400),  # filled in below
    ("an empty body", b"", "image/png", "", 400),
    ("too large", b"\0" * (6 << 20), "image/png", "", 413),
    ("a decompression bomb", png_claiming(20_000, 20_000), "image/png", "", 413),
    ("a gzip bomb", gzip.compress(b"\0" * (80 << 20)), "image/png", "", 413),
    ("text/plain", b"x", "text/plain", "", 415),
    ("no content type", b"x", None, "", 415),
    ("a form upload", b"--x\r\n\r\n--x--", "multipart/form-data; boundary=x", "", 415),
    ("malformed JSON", b'{"image": ', "application/json", "", 400),
    ("JSON of a list", b"[1, 2]", "application/json", "", 400),
    ("JSON without a data URL", json_body({"image": "digit.png"}), "application/json", "", 400),
    ("bad base64", json_body({"image": "data:image/png;base64,@@@"}), "application/json", "", 400),
    ("a blank page", png(np.zeros((50, 50), np.uint8)), "image/png", "", 422),
    ("a stack of images", npy_bytes(np.zeros((3, 28, 28), np.uint8)), "image/png", "", 422),
    ("a class out of range", None, "image/png", "?details=1&class=10", 400),
    ("a class that is no number", None, "image/png", "?class=seven", 400),
    ("a bad details flag", None, "image/png", "?details=maybe", 400),
]


@pytest.mark.parametrize(("what", "body", "kind", "query", "status"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_request_gets_its_4xx_and_the_next_one_works(
    server, digit_pngs, what, body, kind, query, status
):
    good = digit_pngs[0][0]
    if body is None:
        body = good[: len(good) // 2] if what == "a truncated PNG" else good
    code, answer, headers = request(f"{server.url}api/predict{query}", body, kind)
    assert code == status, answer
    assert set(answer) == {"error"} and answer["error"]
    assert headers["content-type"] == "application/json"
    assert predict_png(server.url, good)["event"] == "prediction"
    assert server.process.poll() is None


def test_wrong_methods_paths_and_hosts_get_json_errors(server):
    for path, status in (("api/predict", 405), ("nope", 404), ("static/nope.js", 404)):
        code, answer, _ = request(server.url + path)
        assert code == status and "error" in answer
    code, answer, _ = request(server.url + "api/model", Host="evil.example:80")
    assert code == 421 and "error" in answer  # a DNS-rebinding page cannot reach the API
    assert request(server.url + "api/model")[0] == 200


def test_a_stalled_upload_blocks_nobody(server, digit_pngs):
    host, port = server.url[len("http://") :].rstrip("/").split(":")
    with socket.create_connection((host, int(port))) as stalled:
        stalled.sendall(
            b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            b"Content-Length: 100000\r\n\r\n" + digit_pngs[0][0][:100]
        )
        started = time.monotonic()
        assert predict_png(server.url, digit_pngs[0][0], "?details=1")["label"] >= 0
        assert time.monotonic() - started < 5


def test_concurrent_requests_do_not_mix_up_results(server, digit_pngs):
    pngs, _ = digit_pngs
    reference = [predict_png(server.url, data, "?details=1") for data in pngs]
    assert len({r["label"] for r in reference}) >= 3  # different digits, different answers
    jobs = [n % len(pngs) for n in range(48)]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda n: predict_png(server.url, pngs[n], "?details=1"), jobs))
    for n, answer in zip(jobs, answers, strict=True):
        assert answer["probabilities"] == reference[n]["probabilities"]
        assert answer["details"] == reference[n]["details"]


def test_the_page_is_served_with_its_files_and_nothing_from_elsewhere(server):
    import urllib.request

    with urllib.request.urlopen(server.url) as page:
        html = page.read().decode()
        assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<canvas id="pad"' in html and "/static/app.js" in html
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        with urllib.request.urlopen(f"{server.url}static/{name}") as answer:
            assert kind in answer.headers["content-type"]
            text = answer.read().decode()
        assert "http://" not in text and "https://" not in text  # no CDN: works offline
    assert "http" not in html.replace("http-equiv", "")


# --------------------------------------------------------------------- the command


def test_ctrl_c_and_sigterm_stop_it_with_their_exit_codes(serve_checkpoint):
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        with Server(serve_checkpoint) as running:
            assert request(running.url + "api/model")[0] == 200
            exit_code, stdout, stderr = running.stop(signum)
        assert exit_code == code, stderr
        assert stdout == ""
        errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "stopped" in errors[0] and running.url in errors[0]
        assert "Traceback" not in stderr


def test_a_port_in_use_is_a_usage_error(serve_checkpoint):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("serve", serve_checkpoint, "--port", port)
    assert result.exit_code == 2
    assert "port is in use" in result.stderr and "--port 0" in result.stderr


def test_another_host_is_warned_about_and_open_starts_a_browser(serve_checkpoint, tmp_path):
    seen = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(f"import sys, pathlib; pathlib.Path({str(seen)!r}).write_text(sys.argv[1])")
    env = {"BROWSER": f"{sys.executable} {browser} %s"}
    with Server(serve_checkpoint, "--host", "0.0.0.0", "--open", env=env) as running:
        for _ in range(100):
            if seen.exists() and seen.read_text():
                break
            time.sleep(0.05)
        code, _, stderr = running.stop()
    assert code == 130
    assert "WARNING: serving on 0.0.0.0, not on loopback" in stderr
    assert seen.read_text() == running.url


def test_without_the_extra_it_names_the_extra_to_install(serve_checkpoint):
    code = "import sys; sys.modules['starlette'] = None; from bptrain.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "serve", str(serve_checkpoint)],
        capture_output=True, text=True, env=subprocess_env(), timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "pip install 'bptrain[serve]'" in done.stderr and done.stdout == ""
