// bptrain serve: the draw-a-digit page. Plain JavaScript, no build step, nothing from elsewhere.
//
// Strokes are kept as lists of points (so Undo can redraw), rendered to a 280x280 PNG and sent
// to POST /api/predict?details=1 while you draw: one request in flight at a time, and the
// newest drawing is sent as soon as the previous answer is in.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const EXPORT_SIDE = 280;
  const MIN_GAP_MS = 60; // between two requests while drawing

  const state = {
    model: null,
    strokes: [],
    stroke: null, // the stroke being drawn
    upload: null, // {body, type, name, bitmap}
    target: null, // the class whose gradient is shown; null: the predicted one
    width: 0.075, // stroke width, a fraction of the pad's side
    inflight: false,
    dirty: false,
    timer: 0,
    lastSent: 0,
    results: 0,
  };

  // ------------------------------------------------------------------ colours

  const INFERNO = [
    [0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85],
    [227, 89, 51], [249, 140, 10], [249, 201, 50], [252, 255, 164],
  ];
  const CENTRE = [11, 13, 18];
  const NEG = [74, 168, 255];
  const POS = [255, 93, 74];

  function mix(a, b, t) {
    return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
  }

  function sequential(t) { // t in [0, 1]: dark to bright
    const x = Math.min(1, Math.max(0, t)) * (INFERNO.length - 1);
    const i = Math.min(INFERNO.length - 2, Math.floor(x));
    return mix(INFERNO[i], INFERNO[i + 1], x - i);
  }

  function diverging(t) { // t in [-1, 1]: blue, dark at 0, red
    const a = Math.min(1, Math.abs(t));
    return mix(CENTRE, t < 0 ? NEG : POS, Math.sqrt(a));
  }

  function put(data, i, rgb) {
    data[i] = rgb[0]; data[i + 1] = rgb[1]; data[i + 2] = rgb[2]; data[i + 3] = 255;
  }

  function bytesOf(base64) {
    const text = atob(base64);
    const out = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
    return out;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "style") Object.assign(node.style, value);
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function percent(p) {
    if (p > 0.999) return `${Math.min(99.99, 100 * p).toFixed(2)}%`; // never a rounded 100%
    if (p < 0.001) return p > 0 ? "<0.1%" : "0%";
    return `${(100 * p).toFixed(1)}%`;
  }
  const sci = (v) => (v === null || v === undefined ? "–" : v === 0 ? "0" : v.toExponential(2));
  const dims = (shape) => shape.join("×");

  // ------------------------------------------------------------------ the drawing pad

  const pad = $("pad");
  const padCtx = pad.getContext("2d");

  function render(ctx, side) {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, side, side);
    const up = state.upload;
    if (up && up.bitmap && state.strokes.length === 0) {
      const scale = Math.min(side / up.bitmap.width, side / up.bitmap.height);
      const w = up.bitmap.width * scale, h = up.bitmap.height * scale;
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(up.bitmap, (side - w) / 2, (side - h) / 2, w, h);
    } else if (up && state.strokes.length === 0) {
      ctx.fillStyle = "#8b98a9";
      ctx.font = `${Math.round(side / 22)}px system-ui, sans-serif`;
      ctx.textAlign = "center";
      ctx.fillText(up.name, side / 2, side / 2);
    }
    ctx.strokeStyle = "#fff";
    ctx.fillStyle = "#fff";
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    for (const stroke of state.strokes) drawStroke(ctx, stroke, side);
  }

  function drawStroke(ctx, stroke, side) {
    const pts = stroke.points;
    const widthAt = (p) => side * stroke.width * (stroke.pen ? 0.45 + 1.1 * p.p : 1);
    if (pts.length === 1) {
      ctx.beginPath();
      ctx.arc(pts[0].x * side, pts[0].y * side, widthAt(pts[0]) / 2, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    for (let i = 1; i < pts.length; i++) {
      ctx.lineWidth = (widthAt(pts[i - 1]) + widthAt(pts[i])) / 2;
      ctx.beginPath();
      ctx.moveTo(pts[i - 1].x * side, pts[i - 1].y * side);
      ctx.lineTo(pts[i].x * side, pts[i].y * side);
      ctx.stroke();
    }
  }

  function redraw() {
    render(padCtx, pad.width);
    const empty = state.strokes.length === 0 && !state.upload;
    $("undo").disabled = state.strokes.length === 0;
    $("clear").disabled = empty;
    document.body.dataset.strokes = String(state.strokes.length);
    if (empty) document.body.dataset.state = "empty";
  }

  function point(event) {
    const box = pad.getBoundingClientRect();
    return {
      x: (event.clientX - box.left) / box.width,
      y: (event.clientY - box.top) / box.height,
      p: event.pointerType === "pen" ? event.pressure : 0.5,
    };
  }

  pad.addEventListener("pointerdown", (event) => {
    if (event.pointerType === "mouse" && event.button !== 0) return;
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    if (state.upload) state.upload = null; // drawing starts a new digit
    state.stroke = { id: event.pointerId, pen: event.pointerType === "pen", width: state.width, points: [point(event)] };
    state.strokes.push(state.stroke);
    redraw();
    document.body.dataset.state = "busy";
    schedule();
  });

  pad.addEventListener("pointermove", (event) => {
    const stroke = state.stroke;
    if (!stroke || stroke.id !== event.pointerId) return;
    event.preventDefault();
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const e of events.length ? events : [event]) stroke.points.push(point(e));
    redraw();
    schedule();
  });

  function endStroke(event) {
    if (!state.stroke || state.stroke.id !== event.pointerId) return;
    state.stroke = null;
    schedule(true);
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);

  function undo() {
    if (!state.strokes.length) return;
    state.strokes.pop();
    state.stroke = null;
    redraw();
    schedule(true);
  }

  function clear() {
    state.strokes = [];
    state.stroke = null;
    state.upload = null;
    $("upload").value = "";
    redraw();
    schedule(true);
  }

  $("undo").addEventListener("click", undo);
  $("clear").addEventListener("click", clear);
  $("width").addEventListener("input", (e) => { state.width = Number(e.target.value); });
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") { event.preventDefault(); undo(); }
    else if (event.key === "Escape") clear();
  });

  // ------------------------------------------------------------------ uploads

  $("upload").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    const upload = { name: file.name, bitmap: null };
    if (file.type.startsWith("image/") && file.type !== "image/svg+xml") {
      upload.body = file;
      upload.type = file.type;
    } else { // .npy, IDX, ...: as JSON with a data URL (the server reads the content)
      upload.body = JSON.stringify({ image: await dataUrl(file), name: file.name });
      upload.type = "application/json";
    }
    try { upload.bitmap = await createImageBitmap(file); } catch (_) { /* not a picture the browser knows */ }
    state.strokes = [];
    state.upload = upload;
    redraw();
    document.body.dataset.state = "busy";
    schedule(true);
  });

  function dataUrl(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result).replace(/^data:;base64,/, "data:application/octet-stream;base64,"));
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }

  // ------------------------------------------------------------------ requests

  function schedule(now = false) {
    state.dirty = true;
    document.body.dataset.pending = "1"; // "0" once the newest drawing's answer is shown
    if (state.inflight) return; // sent when the answer is in
    clearTimeout(state.timer);
    const wait = now ? 0 : Math.max(0, MIN_GAP_MS - (performance.now() - state.lastSent));
    state.timer = setTimeout(send, wait);
  }

  async function payload() {
    if (state.strokes.length === 0 && state.upload) {
      return { body: state.upload.body, type: state.upload.type, name: state.upload.name };
    }
    if (state.strokes.length === 0) return null;
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = EXPORT_SIDE;
    render(canvas.getContext("2d"), EXPORT_SIDE);
    // toDataURL, not toBlob: Chromium runs toBlob as an idle task, up to a second later.
    const png = bytesOf(canvas.toDataURL("image/png").split(",")[1]);
    return { body: png, type: "image/png", name: "drawing" };
  }

  async function send() {
    if (state.inflight) return;
    state.inflight = true; // from here: the PNG is made asynchronously too
    state.dirty = false;
    state.lastSent = performance.now();
    try {
      const what = await payload();
      if (!what) { showEmpty(); return; }
      const query = new URLSearchParams({ details: "1", name: what.name });
      if (state.target !== null) query.set("class", String(state.target));
      const response = await fetch(`/api/predict?${query}`, {
        method: "POST", headers: { "Content-Type": what.type }, body: what.body,
      });
      const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
      if (state.strokes.length === 0 && !state.upload) showEmpty();
      else if (!response.ok) showError(data.error || `HTTP ${response.status}`);
      else show(data);
    } catch (error) {
      showError(`the server does not answer (${error.message}); is bptrain serve still running?`);
    } finally {
      state.inflight = false;
      if (state.dirty) schedule();
      else document.body.dataset.pending = "0";
    }
  }

  function status(text, isError = false) {
    const line = $("status");
    line.textContent = text || "\u00a0";
    line.classList.toggle("error", isError);
  }

  // ------------------------------------------------------------------ showing a result

  function show(record) {
    state.results += 1;
    const d = record.details;
    document.body.dataset.state = "ready";
    document.body.dataset.results = String(state.results);
    $("prediction").dataset.label = String(record.label);
    $("label").textContent = record.class_name;
    $("confidence").textContent = `${percent(record.confidence)} sure`;
    showTop(record.top || [], d.class);
    showChips(d.class);
    drawSeen(d.input);
    drawHeat(d.input, d.input_gradient);
    const name = state.model ? state.model.class_names[d.class] : String(d.class);
    $("grad-class").textContent = `for class ${name}${state.target === null ? " (the predicted one)" : ""}`;
    $("more-of").textContent = `‘${name}’`;
    $("loss").replaceChildren(...lossLines(d, name), `‖∂L/∂x‖ = ${sci(d.input_gradient.norm)}`);
    showNorms(d);
    showLayers(d.layers);
    status(record.input === "drawing" ? "" : `${record.input}: read as bptrain predict reads it`);
  }

  // The loss is −log p only without label smoothing; with it the page says so and shows −log p
  // beside it (a 95.8% sure "4" has −log p = 0.043 but a smoothed loss of 0.55).
  function lossLines(d, name) {
    const number = (v) => (v === null || v === undefined ? "–" : v < 1e-3 ? sci(v) : v.toFixed(4));
    const nll = `−log p(${name}) = ${number(d.neg_log_p)}`;
    if (!d.label_smoothing) return [`loss ${nll}`, el("br")];
    return [`loss (label smoothing ${d.label_smoothing}) = ${number(d.loss)}`, el("br"), nll, el("br")];
  }

  function showEmpty() {
    document.body.dataset.state = "empty";
    $("label").textContent = "?";
    $("confidence").textContent = "\u00a0";
    delete $("prediction").dataset.label;
    showTop([], null);
    showChips(null);
    for (const id of ["seen", "heatmap"]) {
      const c = $(id);
      c.getContext("2d").clearRect(0, 0, c.width, c.height);
      delete c.dataset.drawn;
    }
    $("grad-class").textContent = "";
    $("loss").textContent = "";
    $("norms").replaceChildren(el("p", { class: "empty-note", text: "draw a digit to see the gradient flow back" }));
    if (state.model) showLayers(null);
    status("");
  }

  function showError(message) {
    document.body.dataset.state = "error";
    status(message, true);
  }

  function showTop(top, target) {
    const list = $("top");
    const rows = top.length ? top : [null, null, null];
    list.replaceChildren(...rows.map((t) => {
      if (!t) {
        return el("li", {}, el("span", { class: "name", text: "–" }),
          el("span", { class: "track" }, el("span", { class: "fill" })), el("span", { class: "p", text: "" }));
      }
      const item = el("li", { title: `show the gradient for class ${t.class_name}` },
        el("span", { class: "name", text: t.class_name }),
        el("span", { class: "track" }, el("span", { class: "fill", style: { width: `${100 * t.probability}%` } })),
        el("span", { class: "p", text: percent(t.probability) }));
      if (t.label === target) item.classList.add("target");
      item.addEventListener("click", () => choose(t.label));
      return item;
    }));
  }

  function showChips(shown) {
    if (!state.model) return;
    const chips = $("classes");
    const make = (label, value) => {
      const pressed = state.target === value;
      const chip = el("button", {
        class: "chip", type: "button", "aria-pressed": String(pressed), text: label,
        title: value === null ? "the predicted class" : `the gradient of the loss for class ${label}`,
      });
      if (value !== null && value === shown && state.target === null) chip.style.borderColor = "var(--accent)";
      chip.addEventListener("click", () => choose(value));
      return chip;
    };
    chips.replaceChildren(make("auto", null), ...state.model.class_names.map((n, k) => make(n, k)));
  }

  function choose(target) {
    state.target = target;
    showChips(null);
    if (state.strokes.length || state.upload) schedule(true);
  }

  function drawSeen(input) {
    const [h, w] = input.shape;
    const canvas = $("seen");
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(w, h);
    for (let r = 0; r < h; r++) {
      for (let c = 0; c < w; c++) {
        const v = Math.round(255 * input.pixels[r][c]);
        put(image.data, 4 * (r * w + c), [v, v, v]);
      }
    }
    ctx.putImageData(image, 0, 0);
    canvas.dataset.drawn = "1";
    $("seen-size").textContent = `${w}×${h}`;
  }

  function drawHeat(input, gradient) {
    const [h, w] = gradient.shape;
    const canvas = $("heatmap");
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(w, h);
    // Coloured up to the 99th percentile of |dL/dx|: one extreme pixel would hide the rest.
    const sizes = gradient.values.flat().map(Math.abs).sort((a, b) => a - b);
    const m = sizes[Math.floor(0.99 * (sizes.length - 1))] || gradient.max_abs || 1;
    for (let r = 0; r < h; r++) {
      for (let c = 0; c < w; c++) {
        const g = Math.max(-1, Math.min(1, gradient.values[r][c] / m));
        const a = Math.pow(Math.abs(g), 0.75); // a little lift: small gradients stay visible
        const base = 0.32 * 255 * input.pixels[r][c]; // the digit, dimmed, underneath
        const end = g < 0 ? NEG : POS;
        put(image.data, 4 * (r * w + c), [0, 1, 2].map((i) => base * (1 - a) + end[i] * a));
      }
    }
    ctx.putImageData(image, 0, 0);
    canvas.dataset.drawn = "1";
    $("grad-min").textContent = `−${sci(m)}`;
    $("grad-max").textContent = `+${sci(m)}`;
  }

  // ------------------------------------------------------------------ gradient norms

  function showNorms(d) {
    const rows = [];
    for (let i = d.layers.length - 1; i >= 0; i--) {
      const layer = d.layers[i];
      const params = Object.entries(layer.params || {});
      const weight = params.length ? params[0] : null; // W (the first parameter)
      rows.push({ name: `${layer.index} ${layer.type}`, out: layer.gradient.norm, param: weight ? weight[1].grad_norm : null, key: weight ? weight[0] : null });
    }
    rows.push({ name: "input x", out: d.input_gradient.norm, param: null, key: null });
    const values = rows.flatMap((r) => [r.out, r.param]).filter((v) => v > 0);
    const lo = Math.log10(Math.min(...values)) - 0.3;
    const hi = Math.max(Math.log10(Math.max(...values)), lo + 1);
    const width = (v) => (v > 0 ? 3 + 97 * (Math.log10(v) - lo) / (hi - lo) : 0);
    const list = rows.map((r) => {
      const track = el("span", { class: "track" },
        el("span", { class: "fill out", style: { width: `${width(r.out)}%` } }));
      if (r.param !== null) track.append(el("span", { class: "fill param", style: { width: `${width(r.param)}%` } }));
      const what = el("span", { class: "what", title: r.name });
      what.append(el("b", { text: r.name }));
      const value = el("span", { class: "v", text: sci(r.out) });
      if (r.param !== null) value.title = `‖∂L/∂${r.key}‖ = ${sci(r.param)}`;
      return el("div", { class: "norm" }, what, track, value);
    });
    const key = el("p", { class: "norms-key" }, "from the loss back to the input:");
    key.append(el("i", { style: { background: "#8a6cff" } }), "‖∂L/∂ output‖",
      el("i", { style: { background: "var(--accent)" } }), "‖∂L/∂W‖ (weights)");
    $("norms").replaceChildren(...list, key);
  }

  // ------------------------------------------------------------------ layers

  function showLayers(layers) {
    const rows = state.model.layers.map((info, i) => {
      const layer = layers ? layers[i] : null;
      const head = el("div", { class: "head" }, el("span", { class: "idx", text: String(info.index) }),
        el("b", { text: info.type }), el("span", { class: "shape", text: dims(info.output_shape) + (info.params ? ` · ${info.params.toLocaleString("en")} params` : "") }));
      const stats = el("div", { class: "zeros" });
      const pic = el("div", { class: "pic" });
      if (layer) {
        fillStats(stats, layer);
        fillPicture(pic, layer.picture, i === state.model.layers.length - 1);
      } else {
        pic.append(el("span", { class: "empty-note", text: "–" }));
      }
      return el("div", { class: "layer", "data-type": info.type }, head, stats, pic);
    });
    $("layers").replaceChildren(...rows);
  }

  function fillStats(node, layer) {
    const a = layer.activation;
    if (a.zeros !== undefined && a.zeros !== null) {
      node.append(el("span", {}, el("b", { text: `${Math.round(100 * a.zeros)}%` }), " zeros"),
        el("div", { class: "zbar" }, el("div", { class: "zfill", style: { width: `${100 * a.zeros}%` } })));
    } else {
      node.append(el("span", { text: `mean ${a.mean.toFixed(3)}`, title: `std ${a.std.toFixed(3)}` }));
    }
  }

  function fillPicture(node, picture, last) {
    const bytes = bytesOf(picture.data);
    const signed = picture.ranges.some(([lo]) => lo < 0);
    if (picture.kind === "maps") {
      const [n, h, w] = picture.shape;
      const scale = Math.max(1, Math.round(44 / h));
      for (let k = 0; k < n; k++) {
        const canvas = el("canvas", { width: String(w), height: String(h), title: `channel ${k}` });
        canvas.style.width = `${w * scale}px`;
        canvas.style.height = `${h * scale}px`;
        paint(canvas, bytes.subarray(k * h * w, (k + 1) * h * w), picture.ranges[k], signed, w, h);
        node.append(canvas);
      }
      if (picture.channels > n) node.append(el("span", { class: "more", text: `+${picture.channels - n} more channels` }));
      return;
    }
    const units = picture.units;
    const cols = units <= 200 ? units : units > 2000 ? 240 : 120;
    const rows = Math.ceil(units / cols);
    const cell = units <= 200 ? Math.max(3, Math.min(36, Math.floor(760 / units))) : 3;
    const canvas = el("canvas", { class: "strip", width: String(cols), height: String(rows) });
    canvas.style.width = `${cols * cell}px`;
    canvas.style.height = `${units <= 200 ? 18 : rows * cell}px`;
    paint(canvas, bytes, picture.ranges[0], signed, cols, rows);
    if (last && state.model && units === state.model.class_names.length) {
      const labels = el("div", { class: "strip-labels" }, ...state.model.class_names.map((n) =>
        el("span", { text: n, style: { width: `${cell}px` } })));
      node.append(el("div", { class: "strip-wrap", title: "class scores before softmax" }, canvas, labels));
    } else {
      node.append(canvas);
    }
    node.append(el("span", { class: "more", text: `${units.toLocaleString("en")} units` }));
  }

  function paint(canvas, bytes, range, signed, w, h) {
    const [lo, hi] = range;
    const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(w, h);
    for (let i = 0; i < w * h; i++) {
      if (i >= bytes.length) { put(image.data, 4 * i, [20, 24, 31]); continue; }
      const v = lo + (bytes[i] / 255) * (hi - lo);
      put(image.data, 4 * i, signed ? diverging(v / m) : sequential(hi > 0 ? v / hi : 0));
    }
    ctx.putImageData(image, 0, 0);
  }

  // ------------------------------------------------------------------ start

  async function start() {
    redraw();
    try {
      const response = await fetch("/api/model");
      state.model = await response.json();
    } catch (error) {
      showError(`cannot reach the server (${error.message})`);
      return;
    }
    const m = state.model;
    const acc = m.test_accuracy === null || m.test_accuracy === undefined ? "" : ` · test accuracy ${(100 * m.test_accuracy).toFixed(2)}%`;
    const model = $("model");
    model.replaceChildren(el("b", { text: m.name || m.checkpoint }),
      ` · ${m.dataset} · ${m.layers.length} layers · ${m.params.toLocaleString("en")} parameters${acc} · ${m.preprocess} preprocessing`);
    model.title = m.checkpoint;
    showEmpty();
  }

  start();
})();
