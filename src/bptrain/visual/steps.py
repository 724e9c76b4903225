"""A graph's forward and backward pass as a list of steps, for the step-through page.

Forward, node by node in the order the nodes ran; then backward in reverse, each step showing
the chain rule as the node applies it: its local derivative times the upstream gradient it
received gives the gradient it passes back. Every number is one the real node computed (the
seed_graphs Tape keeps them); this module only puts them into words. The page is
steps_page.py; a network's steps (per layer) are steps_network.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..engine.nodes import AddLayer, ExpLayer, MulLayer, ReciprocalLayer
from .graph import Graph, number
from .seed_graphs import Op, Tape, seed_graph

FORWARD, BACKWARD = "forward", "backward"


@dataclass
class Term:
    """One input's gradient as the chain rule makes it: local × upstream = product."""

    wrt: str  # the gradient made, in words: "∂L/∂apple"
    rule: str  # what the local derivative is: "∂(a × b)/∂a = b, the other input"
    local: str
    upstream: str
    product: str
    numbers: list[float] | None = None  # [local, upstream, product] where they are scalars


@dataclass
class Step:
    phase: str  # FORWARD or BACKWARD
    title: str
    caption: str  # the step in plain words
    nodes: list[str]  # the ids of the nodes this step works on (highlighted)
    edges: list[int]  # indexes into graph.edges (highlighted)
    reveal: list[int] = field(default_factory=list)  # edges whose value (of this phase) it makes
    equation: str = ""  # a forward step's arithmetic: "100 × 2 = 200"
    terms: list[Term] = field(default_factory=list)  # a backward step's chain rule


# The seed's node kinds: the symbol drawn, the forward arithmetic, the local derivative's rule.
SYMBOLS = {MulLayer: "×", AddLayer: "+", ExpLayer: "exp", ReciprocalLayer: "1/x"}


def seed_steps(name: str, settings: Sequence[str] = ()) -> tuple[Graph, list[Step]]:
    """One of the seed's examples, computed by its real nodes, and its steps."""
    tape = Tape()
    graph = seed_graph(name, settings, tape)
    return graph, tape_steps(graph, tape)


def tape_steps(graph: Graph, tape: Tape) -> list[Step]:
    names = _names(graph, tape)
    places = {node.id: node.label for node in graph.nodes}  # where a value goes, in words
    places |= {op.node: f"the {SYMBOLS[type(op.layer)]} node making {op.result}"
               for op in tape.forward_order}  # fmt: skip
    steps = [_inputs_step(graph, names)]
    steps += [_forward_step(graph, op, names, places) for op in tape.forward_order]
    steps.append(_seed_gradient_step(graph, tape, names))
    steps += [_backward_step(graph, op, names) for op in tape.backward_order]
    steps.append(_done_step(graph, names))
    return steps


def _names(graph: Graph, tape: Tape) -> dict[str, str]:
    """What each node's value is called: an input's label, an op's result ("apple price")."""
    names = {node.id: node.label for node in graph.nodes}
    names |= {op.node: op.result for op in tape.forward_order}
    return names


def _d(name: str) -> str:
    """∂L/∂name, with parentheses around a name of several words."""
    return f"∂L/∂({name})" if " " in name or name.startswith("-") else f"∂L/∂{name}"


def _factor(value: float) -> str:
    """A number inside arithmetic: 1 × (−1), not 1 × -1."""
    text = number(value)
    return f"({text})" if text.startswith("-") else text


def _is_constant(label: str) -> bool:
    try:
        float(label)
    except ValueError:
        return False
    return True


def _into(graph: Graph, node: str) -> list[int]:
    return [i for i, edge in enumerate(graph.edges) if edge.target == node]


def _out_of(graph: Graph, node: str) -> list[int]:
    return [i for i, edge in enumerate(graph.edges) if edge.source == node]


def _sources(graph: Graph) -> list[str]:
    targets = {edge.target for edge in graph.edges}
    return [node.id for node in graph.nodes if node.id not in targets]


def _inputs_step(graph: Graph, names: dict[str, str]) -> Step:
    sources = _sources(graph)
    edges = [i for node in sources for i in _out_of(graph, node)]
    inputs = [i for i in edges if not _is_constant(names[graph.edges[i].source])]
    known = ", ".join(f"{names[graph.edges[i].source]} = {graph.edges[i].forward}" for i in inputs)
    constants = [names[graph.edges[i].source] for i in edges if i not in inputs]
    if constants:
        known += f"; the constants {' and '.join(constants)}"
    caption = (
        f"The forward pass starts from what is known: {known}. Each node computes its output "
        "from its inputs and hands it on, left to right."
    )
    return Step(FORWARD, "The inputs", caption, sources, edges, reveal=edges)


def _forward_step(graph: Graph, op: Op, names: dict[str, str], places: dict[str, str]) -> Step:
    into, out = _into(graph, op.node), _out_of(graph, op.node)
    if len(into) != len(op.inputs):  # the builder's edges and its calls disagree: a bug here
        raise RuntimeError(f"{op.node}: {len(into)} edges in, {len(op.inputs)} inputs")
    symbol = SYMBOLS[type(op.layer)]
    args = [_factor(value) for value in op.inputs]
    if symbol in ("×", "+"):
        arithmetic = f" {symbol} ".join(args)
    elif symbol == "exp":
        arithmetic = f"exp({number(op.inputs[0])})"
    else:
        arithmetic = f"1 / {args[0]}"
    equation = f"{op.result} = {arithmetic} = {number(op.output)}"
    pairs = zip(into, op.inputs, strict=True)
    inputs = " and ".join(f"{names[graph.edges[i].source]} ({number(a)})" for i, a in pairs)
    receivers = " and ".join(places[graph.edges[i].target] for i in out)
    caption = (
        f"The {symbol} node takes {inputs}, computes {equation}, and sends it on to {receivers}. "
        "It remembers its inputs: backward will need them."
    )
    return Step(FORWARD, f"Forward: {symbol} makes {op.result}", caption, [op.node],
                into + out, reveal=out, equation=equation)  # fmt: skip


def _seed_gradient_step(graph: Graph, tape: Tape, names: dict[str, str]) -> Step:
    last = tape.forward_order[-1]
    out = _out_of(graph, last.node)
    output = names[last.node]
    dout = number(tape.backward_order[0].upstream or 0.0)
    caption = (
        f"The backward pass starts at the end: the gradient of the output {output} is "
        f"dout = {_d(output)} = {dout} (1 when L is {output} itself; --set dout=… changes it). "
        "From here each node multiplies the gradient it receives by its own local derivative."
    )
    targets = [graph.edges[i].target for i in out]
    return Step(BACKWARD, f"Backward starts: dout = {dout}", caption, targets, out, reveal=out)


def _backward_step(graph: Graph, op: Op, names: dict[str, str]) -> Step:
    into, out = _into(graph, op.node), _out_of(graph, op.node)
    symbol = SYMBOLS[type(op.layer)]
    upstream = number(op.upstream or 0.0)
    wanted = [k for k, i in enumerate(into) if graph.edges[i].backward is not None]
    terms = [_term(graph, op, names, into, k) for k in wanted]
    made = "; ".join(
        f"for {names[graph.edges[into[k]].source]}: {_factor(t.numbers[0])} × "
        f"{_factor(t.numbers[1])} = {t.product}"
        for k, t in zip(wanted, terms, strict=True)
        if t.numbers
    )
    constants = [names[graph.edges[i].source] for k, i in enumerate(into) if k not in wanted]
    skipped = f" ({', '.join(constants)} is a constant: no gradient is wanted.)" * bool(constants)
    caption = (
        f"The {symbol} node receives the upstream gradient {_d(op.result)} = {upstream}. "
        f"For each input it multiplies its local derivative by it: {made}.{skipped}"
    )
    reveal = [into[k] for k in wanted]
    return Step(BACKWARD, f"Backward: {symbol} passes the gradient back", caption, [op.node],
                out + reveal, reveal=reveal, terms=terms)  # fmt: skip


def _term(graph: Graph, op: Op, names: dict[str, str], into: list[int], k: int) -> Term:
    local, upstream, product = op.local[k], op.upstream or 0.0, op.grads[k]
    wrt = names[graph.edges[into[k]].source]
    kind = type(op.layer)
    if kind is MulLayer:
        other = names[graph.edges[into[1 - k]].source]
        value = "" if _is_constant(other) else f" = {number(local)}"
        rule = f"∂(a × b)/∂a = b: the other input, {other}{value}"
    elif kind is AddLayer:
        rule = "∂(a + b)/∂a = 1: an add passes the gradient on unchanged"
    elif kind is ExpLayer:
        rule = f"∂exp(a)/∂a = exp(a): the node's own output, {number(local)}"
    else:
        rule = f"∂(1/a)/∂a = −1/a² = −1/{_factor(op.inputs[0])}² = {number(local)}"
    return Term(_d(wrt), rule, number(local), number(upstream), number(product),
                [local, upstream, product])  # fmt: skip


def _done_step(graph: Graph, names: dict[str, str]) -> Step:
    sources = [node for node in _sources(graph) if graph.edges[_out_of(graph, node)[0]].backward]
    edges = [i for node in sources for i in _out_of(graph, node)]
    found = ", ".join(f"{_d(names[graph.edges[i].source])} = {graph.edges[i].backward}"
                      for i in edges)  # fmt: skip
    caption = (
        f"Done: {found}. Each says how much the output moves when that input grows by a "
        "little: the numbers the chain rule carried back, node by node."
    )
    if graph.caption:
        caption += f" {graph.caption}"
    return Step(BACKWARD, "Backward done: the inputs' gradients", caption, sources, edges)
