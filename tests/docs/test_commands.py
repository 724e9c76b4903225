"""The docs are a contract (issue 33 item 8): every shell command in README.md and docs/*.md
runs as the pages say, or the table in contract.py says why it cannot run here."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # contract, sandbox

from contract import TABLE, Entry
from doc_commands import doc_commands, python_snippets
from sandbox import ROOT, SHARED_DATA, new_folder, provide, shell, start_server, stop_server

ALL = sorted({c for commands in doc_commands().values() for c in commands})
HAS_DATA = (SHARED_DATA / "mnist").is_dir()


def test_every_doc_command_is_in_the_table():
    missing = [c for c in ALL if c not in TABLE]
    assert not missing, "classify these in tests/docs/contract.py:\n" + "\n".join(missing)


def test_every_table_entry_is_still_in_the_docs():
    stale = [c for c in TABLE if c not in ALL]
    assert not stale, "these left the docs; drop them from contract.py:\n" + "\n".join(stale)


def test_every_skip_gives_a_reason_and_every_run_a_check():
    for command, entry in TABLE.items():
        assert entry.skip is None or len(entry.skip) > 10, command
        checked = entry.out != "any" or entry.files or entry.server == "self"  # self: URL + exit
        assert entry.skip is not None or checked, command


def _check_stdout(kind: str, stdout: str) -> None:
    if kind == "any":
        return
    if kind == "empty":
        assert stdout == ""
    elif kind.startswith("jsonl:"):
        records = [json.loads(line) for line in stdout.splitlines()]
        assert records and all(isinstance(r, dict) and "event" in r for r in records)
        assert kind[len("jsonl:") :] in {r["event"] for r in records}
    elif kind == "json":  # one JSON document, or one per line (jq -c)
        try:
            assert json.loads(stdout) is not None
        except json.JSONDecodeError:
            assert [json.loads(line) for line in stdout.splitlines()]
    elif kind == "yaml":
        assert isinstance(yaml.safe_load(stdout), dict)
    elif kind == "csv":
        rows = list(csv.reader(io.StringIO(stdout)))
        assert rows and all(len(r) == len(rows[0]) > 1 for r in rows)
    elif kind.startswith("text:"):
        assert kind[len("text:") :] in stdout
    else:
        raise AssertionError(f"unknown output kind {kind!r}")


def _params():
    for command in ALL:
        entry = TABLE.get(command, Entry(skip="not classified (see the first test)"))
        marks = [pytest.mark.slow] if entry.slow else []
        yield pytest.param(command, entry, marks=marks, id=command[:60])


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("prepared")


@pytest.mark.parametrize(("command", "entry"), list(_params()))
def test_doc_command(command, entry, tmp_path, store):
    if entry.skip:
        pytest.skip(entry.skip)
    if (entry.data or entry.needs) and not HAS_DATA:
        pytest.skip(f"needs the shared MNIST copy at {SHARED_DATA / 'mnist'}")
    if entry.option:
        command_name, option = entry.option
        if option not in shell(f"bptrain {command_name} --help", tmp_path).stdout:
            pytest.skip(f"bptrain {command_name} has no {option} yet")
    repo = new_folder(tmp_path)
    provide(entry.needs, repo, store)
    if entry.server == "self":
        process, url = start_server(entry.run or command, repo)
        assert url.startswith("http://")
        assert stop_server(process) == entry.exit
        return
    server = None
    run = entry.run or command
    if entry.server == "client":
        server, url = start_server("bptrain serve runs/cnn.npz --port 0", repo)
        run = run.replace("http://127.0.0.1:8000/", url)
    try:
        result = shell(run, repo)
    finally:
        if server is not None:
            stop_server(server)
    assert result.returncode == entry.exit, result.stderr[-2000:]
    _check_stdout(entry.out, result.stdout)
    for name in entry.files:
        assert (repo / name).exists(), name


SNIPPETS = python_snippets()
OPTUNA = [(page, code) for page, code in SNIPPETS if "import optuna" in code]


@pytest.mark.parametrize(("page", "code"), [s for s in SNIPPETS if s not in OPTUNA])
def test_python_snippets_run(page, code, tmp_path):
    result = shell(f"python - <<'SNIPPET'\n{code}SNIPPET", tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("page", "code"), OPTUNA)
def test_the_optuna_snippet_reads_a_study_and_needs_pandas(page, code, tmp_path, store):
    """F17: the page says trials_dataframe() needs pandas, which bptrain does not install."""
    if not HAS_DATA:
        pytest.skip(f"needs the shared MNIST copy at {SHARED_DATA / 'mnist'}")
    repo = new_folder(tmp_path)
    provide(("runs/sweep-mlp",), repo, store)
    assert '"/nfs/sweeps/mlp.journal"' in code and 'study_name="mlp-v1"' in code
    local = code.replace("/nfs/sweeps/mlp.journal", "runs/sweep-mlp/journal.log")
    local = local.replace('study_name="mlp-v1"', 'study_name="sweep-mlp"')
    result = shell(f"python - <<'SNIPPET'\n{local}SNIPPET", repo)
    has_pandas = shell("python -c 'import pandas'", repo).returncode == 0
    if has_pandas:
        assert result.returncode == 0 and "params_optimizer.lr" in result.stdout, result.stderr
    else:
        assert result.returncode != 0 and "pandas" in result.stderr, result.stderr
        assert "needs pandas" in (ROOT / page).read_text()
