"""The scorecard on stderr: one line per check, a person reads it at a glance."""

from __future__ import annotations

import textwrap

from .runner import ClassReport

TITLES = {
    "forward": "forward equals the reference",
    "backward": "backward equals the reference and numerics",
    "shapes": "gradients have their parameters' shapes",
    "leaves_dout": "backward leaves dout alone",
    "leaves_x": "forward leaves x alone",
    "second_forward": "a second forward replaces the cache",
    "float32": "float32 stays float32",
    "large_inputs": "large inputs (|x| up to 1000)",
    "tensor_input": "takes 4-D input",
    "label_forms": "labels as indices and one-hot",
    "batch_mean": "divides by the batch",
    "inference": "inference uses running statistics",
}


def scorecard(report: ClassReport) -> str:
    against = f"held against {report.reference}" if report.reference else "no reference: numerics"
    lines = [f"{report.file}:{report.cls} ({against})"]
    lines += [f"  note: {note}" for note in report.notes]
    for result in report.results:
        mark = "ok  " if result.ok else "FAIL"
        lines.append(f"  {mark} {result.name:<15} {TITLES.get(result.name, '')}")
        if not result.ok:
            lines += textwrap.wrap(
                result.detail, 96, initial_indent="       ", subsequent_indent="       "
            )
    held = sum(r.ok for r in report.results)
    lines.append(f"  {held} of {len(report.results)} checks hold")
    return "\n".join(lines)
