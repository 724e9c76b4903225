"""Write the measurement tables of docs/ from benchmarks/results/*.json.

    python benchmarks/report.py            # rewrite every generated section of docs/*.md
    python benchmarks/report.py --check    # exit 1 when a committed section differs

The benchmarks (speed.py, speedrun.py, accuracy.py, mpi.py) record what they measured in
benchmarks/results/; the pages show it only through this script, between
`<!-- NAME:start -->` and `<!-- NAME:end -->` markers, so a table never says what its JSON does
not (tests/docs/test_report.py checks that the committed tables are the generated ones). Each
section carries its own provenance line (when, which machine), so the prose around it is free of
dates and commit hashes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other benchmarks' modules

from common import RESULTS, ROOT

DOCS = ROOT / "docs"


def _load(name: str, folder: Path) -> dict:
    return json.loads((folder / f"{name}.json").read_text())


def _machine(info: dict) -> str:
    return (
        f"{info['cpu_count']} CPUs, {info['machine']}, Python {info['python']}, "
        f"NumPy {info['numpy']}"
    )


def speed_section(folder: Path = RESULTS) -> str:
    """speed.py's two tables per thread count, rendered by speed.py's own `table`."""
    import speed  # imports bptrain: only when this section is made

    payload = _load("speed", folder)
    extra = {"load_seconds": payload.get("load_seconds"), "memory": payload.get("memory", {})}
    parts = []
    for run in payload["passes"]:
        rows = [
            SimpleNamespace(name=name, results=r, samples=r["samples"], target=r["target"])
            for name, r in run["networks"].items()
        ]
        parts.append(f"{run['threads']} BLAS and PyTorch thread(s):\n\n{speed.table(rows, extra)}")
    torch = next(
        (r["torch"]["version"] for p in payload["passes"] for r in p["networks"].values()
         if r.get("torch")),
        None,
    )  # fmt: skip
    parts.append(
        f"Measured {payload['when'][:10]} on {_machine(payload['machine'])}"
        f"{f', PyTorch {torch}' if torch else ''}; {payload['data']}, median of "
        f"{payload['repeats']} epochs (`benchmarks/results/speed.json`)."
    )
    return "\n\n".join(parts)


def speedrun_section(folder: Path = RESULTS) -> str:
    import speedrun

    payload = _load("speedrun", folder)
    return (
        speedrun.table(payload)
        + f"\n\nMeasured {payload['when'][:10]} on {_machine(payload['machine'])}, "
        f"{payload['blas_threads']} BLAS thread (`benchmarks/results/speedrun.json`)."
    )


def accuracy_section(folder: Path = RESULTS) -> str:
    import accuracy  # imports bptrain: only when this section is made

    return accuracy.readme_section(folder)


def mpi_section(folder: Path = RESULTS) -> str:
    payload = _load("mpi", folder)
    lines = [
        "| preset | 1 process, 2 BLAS threads | 1 process, 1 thread | `mpiexec -n 2`, 1 thread "
        "each | Allreduce share | speed-up vs 1 thread / vs 2 threads |",
        "|---|---|---|---|---|---|",
    ]
    for row in payload["rows"]:
        lines.append(
            f"| {row['preset']} | {row['one_process_2_threads']['epoch_seconds']:.2f} s | "
            f"{row['mpi_1_rank']['epoch_seconds']:.2f} s | "
            f"{row['mpi_2_ranks']['epoch_seconds']:.2f} s | "
            f"{row['mpi_2_ranks']['allreduce_share']:.1%} | "
            f"{row['speedup_2_ranks_vs_1_rank']:.2f}x / "
            f"{row['speedup_2_ranks_vs_2_threads']:.2f}x |"
        )
    lines.append("")
    lines.append(
        f"{payload['dataset']}, {payload['samples']:,} training samples per epoch, the fastest of "
        f"{payload['epochs']} epochs; {_machine(payload['machine'])} "
        "(`benchmarks/results/mpi.json`)."
    )
    return "\n".join(lines)


# page -> the generated sections it holds, each made by one function
SECTIONS: dict[str, dict[str, Callable[[Path], str]]] = {
    "speed.md": {"speed": speed_section},
    "accuracy.md": {"speedrun": speedrun_section, "accuracy": accuracy_section},
    "scale.md": {"mpi": mpi_section},
}


def render(text: str, sections: dict[str, Callable[[Path], str]], folder: Path) -> str:
    """`text` with each marked section replaced by what its function makes of `folder`."""
    for marker, make in sections.items():
        pattern = re.compile(rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"error: no <!-- {marker}:start/end --> markers to fill")
        body = make(folder)
        text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)
    return text


def stale_pages(docs: Path = DOCS, folder: Path = RESULTS, write: bool = False) -> list[str]:
    """The pages whose generated sections differ from the results (rewritten when `write`)."""
    stale = []
    for page, sections in SECTIONS.items():
        path = docs / page
        old = path.read_text()
        new = render(old, sections, folder)
        if new != old:
            stale.append(page)
            if write:
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_text(new)
                tmp.replace(path)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results folder")
    args = parser.parse_args(argv)
    stale = stale_pages(folder=args.results, write=not args.check)
    for page in stale:
        verb = "differs from" if args.check else "rewritten from"
        print(f"docs/{page} {verb} {args.results}", file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
