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
from sandbox import SHARED_DATA, new_folder, provide, shell

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
        assert entry.skip is not None or entry.out != "any" or entry.files, command


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
    result = shell(entry.run or command, repo)
    assert result.returncode == entry.exit, result.stderr[-2000:]
    _check_stdout(entry.out, result.stdout)
    for name in entry.files:
        assert (repo / name).exists(), name


@pytest.mark.parametrize(("page", "code"), python_snippets())
def test_python_snippets_run(page, code, tmp_path):
    result = shell(f"python - <<'SNIPPET'\n{code}SNIPPET", tmp_path)
    if "import optuna" in code:  # the study of a Slurm sweep on NFS: its journal is not here
        pytest.skip("reads a study on /nfs (needs pandas too, as the page says)")
    assert result.returncode == 0, result.stderr
