// The step-through page (bptrain graph ... --format html): shows one step at a time.
// Every number and word comes from the steps JSON bptrain wrote; nothing is computed here.
(() => {
  "use strict";
  const data = JSON.parse(document.getElementById("steps-data").textContent);
  const steps = data.steps;
  const last = steps.length - 1;
  const $ = (id) => document.getElementById(id);
  const slider = $("slider");
  const nodes = new Map();
  document.querySelectorAll("#graph [data-node]").forEach((el) => nodes.set(el.dataset.node, el));
  const edges = Array.from(document.querySelectorAll("#graph [data-edge]"));

  // The first step that shows each edge's forward value and its gradient, and each node.
  const shownAt = edges.map(() => ({ forward: Infinity, backward: Infinity }));
  const reachedAt = new Map();
  steps.forEach((step, k) => {
    step.reveal.forEach((i) => { shownAt[i][step.phase] = Math.min(shownAt[i][step.phase], k); });
    step.nodes.forEach((id) => { if (!reachedAt.has(id)) reachedAt.set(id, k); });
  });
  // Values known before any node runs (the inputs) are shown from the first step.
  steps[0].reveal.forEach((i) => { shownAt[i].forward = 0; });

  function text(tag, className, content) {
    const el = document.createElement(tag);
    el.className = className;
    el.textContent = content;
    return el;
  }

  function term(t) {
    const li = document.createElement("li");
    li.className = "term";
    li.append(text("div", "wrt", t.wrt), text("div", "rule", t.rule));
    const chain = document.createElement("div");
    if (t.numbers) {  // scalars: the chain rule in one line, as the seed writes it
      chain.className = "chain";
      chain.append(text("span", "local", t.local), text("span", "op", " × "),
        text("span", "upstream", t.upstream), text("span", "op", " = "),
        text("span", "product", t.product));
      li.append(chain, text("div", "names", "local derivative × upstream gradient = gradient passed back"));
    } else {  // arrays: their shapes and norms, one to a line
      chain.className = "chain arrays";
      for (const [tag, cls, value] of [["local derivative", "local", t.local],
        ["× upstream gradient", "upstream", t.upstream], ["= passed back", "product", t.product]]) {
        const row = document.createElement("div");
        row.append(text("span", "tag", tag), text("span", cls, value));
        chain.append(row);
      }
      li.append(chain);
    }
    return li;
  }

  function show(k) {
    const at = Math.max(0, Math.min(last, Math.round(Number(k) || 0)));
    const step = steps[at];
    document.body.dataset.step = String(at);
    document.body.dataset.phase = step.phase;
    const first = nodes.get(step.nodes[0]);
    if (first && typeof first.scrollIntoView === "function") {
      first.scrollIntoView({ block: "nearest", inline: "nearest" });
    }
    nodes.forEach((el, id) => {
      el.classList.toggle("active", step.nodes.includes(id));
      el.classList.toggle("reached", (reachedAt.get(id) ?? Infinity) <= at);
    });
    edges.forEach((el, i) => {
      el.classList.toggle("active", step.edges.includes(i));
      el.querySelectorAll(".value").forEach((label) => {
        const phase = label.classList.contains("forward") ? "forward" : "backward";
        label.classList.toggle("shown", shownAt[i][phase] <= at);
      });
    });
    const forwardSteps = steps.filter((s) => s.phase === "forward").length;
    $("phase").textContent = step.phase === "forward"
      ? `Forward pass · step ${at + 1} of ${forwardSteps}`
      : `Backward pass · step ${at + 1 - forwardSteps} of ${steps.length - forwardSteps}`;
    $("step-title").textContent = step.title;
    $("caption").textContent = step.caption;
    $("equation").textContent = step.equation;
    $("equation").hidden = !step.equation;
    $("terms").replaceChildren(...step.terms.map(term));
    $("counter").textContent = `${at + 1} / ${steps.length}`;
    slider.value = String(at);
    $("prev").disabled = at === 0;
    $("next").disabled = at === last;
    if (at === last) stop();
  }

  const current = () => Number(document.body.dataset.step);
  let timer = null;
  function stop() {
    if (timer !== null) clearInterval(timer);
    timer = null;
    $("play").textContent = "Play";
  }
  function play() {
    if (timer !== null) return stop();
    if (current() === last) show(0);
    $("play").textContent = "Pause";
    timer = setInterval(() => show(current() + 1), 1600);
  }

  $("prev").addEventListener("click", () => { stop(); show(current() - 1); });
  $("next").addEventListener("click", () => { stop(); show(current() + 1); });
  $("play").addEventListener("click", play);
  slider.addEventListener("input", () => { stop(); show(slider.value); });
  document.addEventListener("keydown", (event) => {
    // The slider moves itself with these keys (and reports it as "input").
    if (event.target === slider || event.altKey || event.ctrlKey || event.metaKey) return;
    const moves = { ArrowRight: current() + 1, ArrowLeft: current() - 1, Home: 0, End: last };
    if (!(event.key in moves)) return;
    event.preventDefault();
    stop();
    show(moves[event.key]);
  });
  show(0);
})();
