"""The pages' promises that are not commands: generated tables, the exit-code table, the
reading path's symbols, and the site built strictly."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bptrain import console
from bptrain.errors import ExitCode

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "benchmarks"))

import report  # noqa: E402


def test_committed_tables_are_the_generated_ones():
    assert report.stale_pages() == [], "run: python benchmarks/report.py"


def test_a_changed_result_changes_its_table(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(report.RESULTS, results)
    payload = json.loads((results / "speedrun.json").read_text())
    payload["median_accuracy"] = 0.5
    (results / "speedrun.json").write_text(json.dumps(payload))
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    assert report.stale_pages(docs, results, write=True) == ["accuracy.md"]
    assert "| median | 50.00% |" in (docs / "accuracy.md").read_text()
    assert report.stale_pages(docs, results) == []


def test_the_exit_code_table_is_errors_py_exit_codes():
    text = (DOCS / "records.md").read_text()
    assert console.exit_codes_markdown() in text
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", text, re.M)
    assert [(int(c), m) for c, m in rows] == [(c.value, c.meaning) for c in ExitCode]


STOP = re.compile(r"^\*\*Read\*\* \[`[^`]+`\]\(\.\./([^)]+\.py)\): (.+)$", re.M)


def _defined(path: Path) -> set[str]:
    """Top-level names, and Class.method for every class's functions."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names |= {f"{node.name}.{f.name}" for f in node.body
                      if isinstance(f, ast.FunctionDef)}  # fmt: skip
        if isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _stops() -> list[tuple[str, list[str]]]:
    text = (DOCS / "reading.md").read_text()
    return [(path, re.findall(r"`([\w.]+)`", symbols)) for path, symbols in STOP.findall(text)]


def test_reading_walks_the_engine_in_the_seeds_order():
    paths = [p for p, _ in _stops()]
    order = ["nodes.py", "layers/base.py", "layers/core.py", "losses.py", "network.py",
             "train.py", "optimizers.py", "gradcheck.py"]  # fmt: skip
    engine = [p.removeprefix("src/bptrain/engine/") for p in paths if "/engine/" in p]
    assert engine[: len(order)] == order


@pytest.mark.parametrize(("path", "symbols"), _stops(), ids=lambda v: str(v)[:50])
def test_every_symbol_reading_names_is_in_its_file(path, symbols):
    source = ROOT / path
    assert symbols, path
    missing = set(symbols) - _defined(source)
    assert not missing, f"{path} has no {sorted(missing)}"


def _mkdocs(root: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=root, capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": ""},
    )  # fmt: skip


@pytest.fixture
def mkdocs():
    pytest.importorskip("material", reason="mkdocs-material (the dev extra) builds the site")


def test_the_site_builds_strictly(mkdocs, tmp_path):
    result = _mkdocs(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "reading" / "index.html").is_file()
    assert (tmp_path / "site" / "src" / "bptrain" / "engine" / "nodes.py").is_file()


@pytest.mark.parametrize("broken", ["![gone](nothing.png)", "[gone](../src/bptrain/nothing.py)"])
def test_a_broken_link_or_picture_fails_the_build(mkdocs, tmp_path, broken):
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in ("README.md", "mkdocs.yml"):
        shutil.copy(ROOT / name, copy / name)
    shutil.copytree(DOCS, copy / "docs")
    (copy / "src").symlink_to(ROOT / "src")
    (copy / "configs").symlink_to(ROOT / "configs")
    (copy / "benchmarks").symlink_to(ROOT / "benchmarks")
    with (copy / "docs" / "data.md").open("a") as page:
        page.write(f"\n{broken}\n")
    result = _mkdocs(copy, tmp_path / "site")
    assert result.returncode != 0 and "data.md" in result.stderr, result.stderr
