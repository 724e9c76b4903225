"""`bptrain plot`: learning curves of runs, or the confusion matrix of an eval, drawn to a file.

A RUN is a checkpoint (its stored history) or the JSON Lines that `bptrain train` or `bptrain
eval` printed; which one is read from the content (a checkpoint is a zip), never the suffix.
matplotlib is an optional extra, imported here only, through its object-oriented API: a
`Figure` on an Agg canvas, no pyplot, so no global figure state and no GUI backend.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .. import __version__, extras
from ..errors import ConfigError
from ..run import artifact
from .runs import EvalRun, TrainingRun, is_number, read_run

log = logging.getLogger("bptrain.plot")

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
CURVES_SIZE = (12.0, 4.2)  # inches: three panels side by side, the legend below
CONFUSION_SIZE = (7.0, 6.0)
MAX_PIXELS = 16384  # per side; Agg refuses far larger pictures anyway
COLORBAR_TICKS = (0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1)
MAX_CELL_TEXTS = 30  # classes; beyond this the counts would not fit in their cells
# Titles, labels and class names are text as typed: "$x_$" is not a formula (mathtext is kept
# for the log axis's tick labels, 10^-3).
PLAIN = {"parse_math": False}
_MISSING_GLYPH = re.compile(r"Glyph (\d+) .*missing from font\(s\) (.+?)\.?$")
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11.5,
    "axes.labelsize": 10.5,
    "xtick.labelsize": 9.5,
    "ytick.labelsize": 9.5,
    "legend.fontsize": 10,
    "figure.titlesize": 13,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "bptrain",  # stable element ids: the same plot gives the same SVG
}


@dataclass(frozen=True)
class PlotRequest:
    """What `bptrain plot` was asked for."""

    runs: tuple[str, ...]
    out: str
    overwrite: bool = False
    title: str | None = None
    labels: tuple[str, ...] = ()
    dpi: int = 150
    size: tuple[float, float] | None = None


@dataclass
class Picture:
    """A drawn figure and what was written on it (legend entries, cell texts) for checks."""

    figure: Any
    kind: str
    legend: list[str] = field(default_factory=list)
    cells: list[list[str]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# The command


def plot(request: PlotRequest, *, emit: Callable[[dict[str, Any]], None], stdin: IO[bytes]) -> dict:
    """Read the RUNs, draw curves or a confusion matrix, write --out atomically, emit a record."""
    out, fmt = check_request(request)
    _require_matplotlib()
    inputs = [read_run(source, stdin) for source in request.runs]
    for run, label in zip(inputs, _labels(inputs, request.labels), strict=True):
        run.label = label
    with _warnings_as_log():
        picture = render(inputs, title=request.title, size=request.size, dpi=request.dpi)
        data = draw(picture.figure, fmt, request.dpi)
    artifact.write(data, out, overwrite=request.overwrite, what=f"a {fmt} picture")
    width, height = picture.figure.canvas.get_width_height()
    record = {
        "event": "plot", "kind": picture.kind, "format": fmt, "out": str(out),
        "runs": list(request.runs), "labels": [run.label for run in inputs],
        "width": width, "height": height, "dpi": request.dpi,
    }  # fmt: skip
    what = "learning curves" if picture.kind == "curves" else "confusion matrix"
    log.info(
        f"{what} of {', '.join(request.runs)} -> {out} ({width}x{height} px at {request.dpi} dpi)"
    )
    emit(record)
    return record


def check_request(request: PlotRequest) -> tuple[Path, str]:
    """Usage checks before any input is read: suffix, sizes, labels, an --out already there."""
    out = Path(request.out)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"--out {out}: cannot tell the picture's format from {out.suffix or 'no suffix'!r}",
            hint=f"end the file name in {', '.join(FORMATS)}",
        )
    if request.runs.count("-") > 1:
        raise ConfigError("'-' (stdin) is given more than once", hint="stdin is read once")
    if request.labels and len(request.labels) != len(request.runs):
        raise ConfigError(
            f"--label is given {len(request.labels)} time(s) for {len(request.runs)} RUN(s)",
            hint="give one --label per RUN, in the same order, or none",
        )
    if request.size is not None:
        _check_size(request.size, request.dpi)
    artifact.check_out(request.out, overwrite=request.overwrite)
    return out, fmt


def _check_size(size: tuple[float, float], dpi: int) -> None:
    width, height = size
    if not (2 <= width <= 100 and 2 <= height <= 100):
        raise ConfigError(
            f"--size {width:g}x{height:g}: each side must be 2 to 100 inches",
            hint="e.g. --size 12x4.2 for curves, 7x6 for a confusion matrix",
        )
    if max(width, height) * dpi > MAX_PIXELS:
        raise ConfigError(
            f"--size {width:g}x{height:g} at --dpi {dpi} is over {MAX_PIXELS} pixels a side",
            hint="lower --dpi or --size",
        )


def _require_matplotlib() -> Any:
    return extras.require("matplotlib", "plot", "bptrain plot")


def _labels(inputs: Sequence[TrainingRun | EvalRun], given: Sequence[str]) -> list[str]:
    """--label values, else the file stems (the paths as given where two stems are the same)."""
    if given:
        return list(given)
    stems = [_stem(run.source) for run in inputs]
    labels = [
        s if stems.count(s) == 1 else run.source for s, run in zip(stems, inputs, strict=True)
    ]
    return [
        lab if labels[:i].count(lab) == 0 else f"{lab} ({i + 1})" for i, lab in enumerate(labels)
    ]


def _stem(source: str) -> str:
    return "stdin" if source == "-" else Path(source).stem


# ---------------------------------------------------------------------------------------------
# Drawing


def render(
    inputs: Sequence[TrainingRun | EvalRun],
    *,
    title: str | None = None,
    size: tuple[float, float] | None = None,
    dpi: int = 150,
) -> Picture:
    """Learning curves of training runs, or one eval's confusion matrix, as a Figure."""
    evals = [run for run in inputs if isinstance(run, EvalRun)]
    if evals and len(inputs) > 1:
        raise ConfigError(_mixed_message(inputs, evals), hint="plot each one to its own --out")
    for run in inputs:
        run.label = run.label or _stem(run.source)
    figure = _figure(size or (CONFUSION_SIZE if evals else CURVES_SIZE), dpi)
    with _style():
        if evals:
            return _draw_confusion(figure, evals[0], title)
        return _draw_curves(figure, list(inputs), title)  # type: ignore[arg-type]


def _mixed_message(inputs: Sequence[Any], evals: Sequence[EvalRun]) -> str:
    if len(evals) > 1:
        names = ", ".join(run.source for run in evals)
        return f"a confusion matrix is drawn from one eval record; got {len(evals)} ({names})"
    trained = next(run for run in inputs if isinstance(run, TrainingRun))
    return (
        f"{evals[0].source} is an eval record and {trained.source} a training run: a picture "
        "is either learning curves or one confusion matrix"
    )


def _figure(size: tuple[float, float], dpi: int) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with _style():
        figure = Figure(figsize=size, dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _style() -> Any:
    import matplotlib

    return matplotlib.rc_context(STYLE)


def _draw_curves(figure: Any, runs: list[TrainingRun], title: str | None) -> Picture:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    loss, accuracy, lr = figure.subplots(1, 3)
    for ax, name in ((loss, "Loss"), (accuracy, "Accuracy"), (lr, "Learning rate")):
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3, linewidth=0.6)
    accuracy.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:.6g}%"))
    for i, run in enumerate(runs):
        _draw_run(loss, accuracy, lr, run, f"C{i % 10}", single=len(runs) == 1)
    _lr_scale(lr, runs)
    title = _curves_title(runs) if title is None else title
    if title:
        figure.suptitle(title, **PLAIN)
    legend = _curves_legend(figure, runs)
    return Picture(figure, "curves", legend=legend)


def _draw_run(
    loss: Any, accuracy: Any, lr: Any, run: TrainingRun, color: str, single: bool
) -> None:
    marker = {"marker": "o", "markersize": 3.5} if len(run.history) <= 30 else {}
    for ax, key in ((loss, "loss"), (accuracy, "accuracy")):
        for prefix, style in (("train_", "-"), ("val_", "--")):
            x, y = run.points(prefix + key)
            ax.plot(x, y, style, color=color, linewidth=1.8, **marker)
    lr.plot(*run.points("lr"), "-", color=color, linewidth=1.8, **marker)
    best = run.best()
    if best is None:
        return
    epoch, value = best
    accuracy.plot([epoch], [value], "*", color=color, markersize=14, markeredgecolor="white",
                  markeredgewidth=0.8, zorder=5)  # fmt: skip
    if single:
        for ax in (loss, accuracy):
            ax.axvline(epoch, color="0.55", linestyle=":", linewidth=1, zorder=0)


def _lr_scale(ax: Any, runs: Sequence[TrainingRun]) -> None:
    """A log scale when the runs' learning rates differ by orders of magnitude."""
    peaks = [max(v) for run in runs if (v := run.points("lr")[1])]
    if not peaks:
        ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center", color="0.4")
        ax.set_yticks([])
    elif min(peaks) > 0 and max(peaks) / min(peaks) > 20:
        ax.set_yscale("log")
        # A schedule decaying to ~0 would stretch the axis over ten decades: show three
        # below the smallest run's peak (the curve leaving the axis still says "towards 0").
        low = min(v for run in runs for v in run.points("lr")[1] if v > 0)
        ax.set_ylim(bottom=max(low, min(peaks) * 1e-3) / 1.5, top=max(peaks) * 1.5)
    else:
        ax.ticklabel_format(axis="y", useOffset=False, style="sci", scilimits=(-3, 4))


def _curves_title(runs: Sequence[TrainingRun]) -> str:
    if len(runs) == 1:
        run = runs[0]
        tested = [f"test accuracy {run.test_accuracy:.2%}"] if run.test_accuracy is not None else []
        return " · ".join([run.name, *run.facts, *tested])
    names = " vs ".join(run.label for run in runs) if len(runs) <= 3 else f"{len(runs)} runs"
    datasets = {run.facts[0] for run in runs if run.facts and not run.facts[0].startswith("seed")}
    shared = [datasets.pop()] if len(datasets) == 1 and all(
        run.facts and not run.facts[0].startswith("seed") for run in runs) else []  # fmt: skip
    return " · ".join([f"Learning curves: {names}", *shared])


def _curves_legend(figure: Any, runs: Sequence[TrainingRun]) -> list[str]:
    from matplotlib.lines import Line2D

    single = len(runs) == 1
    color = "C0" if single else "0.35"
    handles = [] if single else [
        Line2D([], [], color=f"C{i % 10}", linewidth=2.5, label=_run_entry(run))
        for i, run in enumerate(runs)
    ]  # fmt: skip
    handles.append(Line2D([], [], color=color, linestyle="-", label="training"))
    if any(run.points("val_loss")[0] or run.points("val_accuracy")[0] for run in runs):
        handles.append(Line2D([], [], color=color, linestyle="--", label="validation"))
        handles.append(Line2D([], [], color=color, marker="*", linestyle="", markersize=11,
                              label=_best_entry(runs)))  # fmt: skip
    legend = figure.legend(handles=handles, loc="outside lower center",
                           ncols=min(len(handles), 6), frameon=False)  # fmt: skip
    for text in legend.get_texts():
        text.set_parse_math(False)  # run labels are file names or --label: plain text
    return [handle.get_label() for handle in handles]


def _best_entry(runs: Sequence[TrainingRun]) -> str:
    best = runs[0].best() if len(runs) == 1 else None
    if best is None:
        return "best validation accuracy"
    return f"best validation accuracy: {best[1]:.2%} (epoch {best[0]})"


def _run_entry(run: TrainingRun) -> str:
    if run.test_accuracy is None:
        return run.label
    return f"{run.label} (test {run.test_accuracy:.2%})"


def _draw_confusion(figure: Any, run: EvalRun, title: str | None) -> Picture:
    import numpy as np
    from matplotlib.colors import PowerNorm
    from matplotlib.ticker import FuncFormatter

    record = run.record
    names = record["class_names"]
    # float64: exact for every count runs.py lets through (<= 2**53), and sums cannot wrap
    counts = np.asarray(record["confusion_matrix"], dtype=np.float64)  # (true, predicted)
    totals = counts.sum(axis=1, keepdims=True)
    share = counts / np.maximum(totals, 1)  # rows normalised: each true class sums to 1
    ax = figure.subplots()
    # A square-root colour scale: a 1% confusion is a visible tint beside a 98% diagonal.
    norm = PowerNorm(gamma=0.5, vmin=0, vmax=1)
    image = ax.imshow(share, cmap="Blues", norm=norm, interpolation="nearest")
    bar = figure.colorbar(image, ax=ax, fraction=0.046, pad=0.03, ticks=COLORBAR_TICKS,
                          format=FuncFormatter(lambda v, _: f"{100 * v:.6g}%"))  # fmt: skip
    bar.set_label("share of the true class")
    bar.outline.set_visible(False)
    _confusion_axes(ax, names)
    cells = _cell_texts(ax, image, counts, share) if len(names) <= MAX_CELL_TEXTS else []
    ax.set_title(_confusion_title(run) if title is None else title, pad=10, **PLAIN)
    return Picture(figure, "confusion", cells=cells)


def _confusion_axes(ax: Any, names: Sequence[str]) -> None:
    import numpy as np

    k = len(names)
    long_names = max(len(n) for n in names) > 3
    ax.set_xticks(range(k), labels=names, rotation=40 if long_names else 0, **PLAIN,
                  ha="right" if long_names else "center", rotation_mode="anchor")  # fmt: skip
    ax.set_yticks(range(k), labels=names, **PLAIN)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_xticks(np.arange(k + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(k + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1.2)
    ax.grid(which="major", visible=False)
    ax.tick_params(which="both", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _cell_texts(ax: Any, image: Any, counts: Any, share: Any) -> list[list[str]]:
    """Each cell's raw count, dark on light cells and white on dark ones."""
    k = counts.shape[0]
    size = max(6.0, min(10.0, 95 / k))
    texts = []
    for i in range(k):
        row = []
        for j in range(k):
            text = f"{int(counts[i, j]):,}"
            r, g, b, _ = image.cmap(image.norm(share[i, j]))
            dark = 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5
            color = "white" if dark else ("0.15" if counts[i, j] else "0.6")
            ax.text(j, i, text, ha="center", va="center", fontsize=size, color=color)
            row.append(text)
        texts.append(row)
    return texts


def _confusion_title(run: EvalRun) -> str:
    record = run.record
    checkpoint_path = record.get("checkpoint")
    name = run.label
    if name == _stem(run.source) and isinstance(checkpoint_path, str):
        name = Path(checkpoint_path).stem  # the model, rather than the file the record is in
    parts = [name]
    if isinstance(record.get("split"), str):
        parts.append(f"{record['split']} split")
    if is_number(record.get("accuracy")):
        parts.append(f"accuracy {record['accuracy']:.2%}")
    if is_number(record.get("n")):
        parts.append(f"n = {record['n']:,}")
    if record.get("complete") is False:
        parts.append("unfinished run")
    return " · ".join(parts)


# ---------------------------------------------------------------------------------------------
# Writing


def draw(figure: Any, fmt: str, dpi: int) -> bytes:
    """The figure rendered in memory as a file in `fmt`."""
    buffer = io.BytesIO()
    with _style():
        figure.savefig(buffer, format=fmt, dpi=dpi, metadata=_metadata(fmt))
    return buffer.getvalue()


@contextlib.contextmanager
def _warnings_as_log() -> Iterator[None]:
    """matplotlib's warnings as one plain line each, not Python's warning with source paths;
    glyphs the font lacks (CJK, emoji in a --title or --label) are named in one line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    missing, fonts, others = [], "", []
    for warning in caught:
        text = str(warning.message)
        glyph = _MISSING_GLYPH.match(text)
        if glyph:
            char, fonts = chr(int(glyph[1])), glyph[2]
            missing += [char] if char not in missing else []
        elif text not in others:
            others.append(text)
    if missing:
        log.warning(
            f"the font ({fonts}) has no glyph for {' '.join(missing)}: they are drawn as boxes "
            "(set font.family in a matplotlibrc to a font that has them)"
        )
    for text in others:
        log.warning(f"matplotlib: {text}")


def _metadata(fmt: str) -> dict[str, Any]:
    creator = f"bptrain {__version__}"
    if fmt == "png":
        return {"Software": creator}
    if fmt == "svg":
        return {"Creator": creator, "Date": None}  # no date: the same plot, the same bytes
    return {"Creator": creator, "CreationDate": None}
