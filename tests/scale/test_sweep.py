"""`bptrain sweep`: real Optuna, real journal files and SQLite databases, real worker processes,
on the tiny synthetic IDX data; specs checked whole before any trial runs."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bptrain.run import checkpoint
from bptrain.scale.sweep.storage import Storage, storage_of
from bptrain.scale.sweep.worker import HOST
from cli_helpers import invoke, records, small_config, spawn, subprocess_env, write_config
from scale.sweep_helpers import split, study_of, write_spec


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, idx_folder):
    """A six-trial sweep with two worker processes and the default journal file."""
    folder = tmp_path_factory.mktemp("sweep")
    config = write_config(folder / "small.yaml", small_config(idx_folder))
    spec = write_spec(folder, config, set={"train.epochs": 8})  # long enough for both workers
    out = folder / "out"
    result = invoke("sweep", spec, "--workers", 2, "--out", out)
    assert result.exit_code == 0, result.stderr
    return out, result


def test_two_workers_record_every_trial_once_each_with_its_checkpoint(two_workers):
    out, result = two_workers
    trials, summary = split(result.stdout)
    assert sorted(t["number"] for t in trials) == list(range(6))  # once each, no clashes
    study = study_of(str(out / "journal.log"), "spec")
    stored = study.get_trials()
    assert [t.number for t in stored] == list(range(6))
    assert {t.state.name for t in stored} <= {"COMPLETE", "PRUNED"}
    assert {t.user_attrs["pid"] for t in stored} and len({t.user_attrs["pid"] for t in stored}) == 2
    for record in trials:
        ckpt = checkpoint.load(record["checkpoint"])  # each trial's own, loadable
        assert record["checkpoint"] == str(out / f"trial-{record['number']:04d}.npz")
        units = ckpt.info.config["model"]["layers"][1]["units"]
        assert units == record["params"]["model.layers[1].units"]
        assert ckpt.info.config["optimizer"]["lr"] == record["params"]["optimizer.lr"]
    best = study.best_trial
    assert summary["best_trial"] == best.number and summary["best_value"] == best.value
    assert summary["best_params"] == best.params and summary["study"] == "spec"
    assert summary["n_complete"] + summary["n_pruned"] == 6 and summary["n_failed"] == 0
    assert "6/6 done" in result.stderr


def test_best_yaml_retrains_to_the_best_trials_value(two_workers, tmp_path):
    out, result = two_workers
    _, summary = split(result.stdout)
    text = (out / "best.yaml").read_text()
    assert text.startswith(f"# The best trial of sweep study 'spec' ({out}/journal.log): trial ")
    retrained = invoke("train", out / "best.yaml", "--threads", 1, "--out", tmp_path / "b.npz")
    assert retrained.exit_code == 0, retrained.stderr
    *epochs, final = records(retrained.stdout)
    assert final["best_val_accuracy"] == summary["best_value"]  # same seed, same data
    trial = checkpoint.load(out / f"trial-{summary['best_trial']:04d}.npz")
    assert [e["val_loss"] for e in epochs] == [e["val_loss"] for e in trial.history]
    assert final["test_accuracy"] == trial.metrics["test_accuracy"]


def test_a_rerun_continues_the_study(tmp_path, config_file):
    spec = write_spec(tmp_path, config_file, trials=2, pruner="none")
    out = tmp_path / "out"
    first = invoke("sweep", spec, "--out", out)
    assert first.exit_code == 0, first.stderr
    again = invoke("sweep", spec, "--out", out)  # the study has its trials: nothing to do
    assert again.exit_code == 0, again.stderr
    assert split(again.stdout)[0] == []
    study = study_of(str(out / "journal.log"), "spec")
    stale = study.ask()  # as if a killed process of this machine had left it running
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale.set_user_attr("host", HOST)
    stale.set_user_attr("pid", gone.pid)
    more = invoke("sweep", spec, "--out", out, "--trials", 4)
    assert more.exit_code == 0, more.stderr
    trials, summary = split(more.stdout)
    assert "trial 2 was left running by process" in more.stderr
    assert [t["number"] for t in trials] == [3, 4]  # numbers continue; the stale one: FAIL
    assert (summary["n_complete"], summary["n_failed"]) == (4, 1)  # and it does not count
    assert "4 trials planned, 3 in the study so far" in more.stderr


def test_a_bad_learning_rate_gets_pruned(tmp_path, config_file):
    spec = write_spec(
        tmp_path, config_file, set={"train.epochs": 4}, trials=10, sampler="random", seed=0,
        space={"optimizer.lr": {"choice": [1.0e-6, 0.1]}},
        pruner={"type": "median", "startup_trials": 2},
    )  # fmt: skip
    result = invoke("sweep", spec, "--workers", 2, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    trials, summary = split(result.stdout)
    pruned = [t for t in trials if t["state"] == "PRUNED"]
    assert pruned and summary["n_pruned"] == len(pruned)
    assert all(t["params"]["optimizer.lr"] == 1e-6 and t["epochs"] < 4 for t in pruned)
    assert summary["best_params"] == {"optimizer.lr": 0.1}
    assert all(t["state"] == "COMPLETE" for t in trials if t["params"]["optimizer.lr"] == 0.1)


def test_a_diverging_trial_fails_and_the_sweep_goes_on(tmp_path, config_file):
    spec = write_spec(
        tmp_path, config_file, sampler="grid", pruner="none", trials=5,
        space={"optimizer.lr": {"choice": [0.05, 1.0e30]}},
    )  # fmt: skip
    result = invoke("sweep", spec, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    trials, summary = split(result.stdout)
    assert len(trials) == 2  # the grid has two points: trials 5 is capped to them
    by_lr = {t["params"]["optimizer.lr"]: t for t in trials}
    assert by_lr[1e30]["state"] == "FAIL" and by_lr[1e30]["value"] is None
    assert by_lr[0.05]["state"] == "COMPLETE"
    assert summary["n_failed"] == 1 and summary["best_params"] == {"optimizer.lr": 0.05}
    assert "failed: training diverged" in result.stderr


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_second_process_with_the_same_storage_joins_the_study(tmp_path, config_file, kind):
    spec = write_spec(tmp_path, config_file, set={"train.epochs": 12}, trials=10)
    storage = str(tmp_path / "shared.log") if kind == "journal" else f"sqlite:///{tmp_path}/s.db"
    common = ("sweep", spec, "--storage", storage, "--study", "shared", "-q")
    procs = [
        spawn(*common, "--out", tmp_path / f"machine{i}", stdout=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    mine = [[t["number"] for t in split(text)[0]] for text in outputs]
    assert all(mine), mine  # both machines ran trials
    assert sorted(mine[0] + mine[1]) == list(range(10))  # of one study, once each
    stored = study_of(storage, "shared").get_trials()
    assert [t.number for t in stored] == list(range(10))
    assert all(t.state.is_finished() for t in stored)


def test_ctrl_c_stops_the_workers_and_leaves_no_trial_running(tmp_path, config_file):
    spec = write_spec(tmp_path, config_file, set={"train.epochs": 2000}, trials=4)
    out = tmp_path / "out"
    proc = spawn(
        "sweep", spec, "--workers", 2, "--out", out,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (out / "trial-0001.npz").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # both trials are training once both checkpoints are written
    while not (out / "trial-0000.npz").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "interrupted (SIGINT)" in errors[0]
    assert "Traceback" not in stderr
    stopped = records(stdout)
    assert {r["state"] for r in stopped} == {"FAIL"} and len(stopped) == 2
    stored = study_of(str(out / "journal.log"), "spec").get_trials()
    assert len(stored) == 2 and all(t.state.name == "FAIL" for t in stored)  # none RUNNING
    for record in stopped:  # each stopped at a step, with its checkpoint written
        assert checkpoint.load(record["checkpoint"]).epochs >= 1


def test_bad_specs_report_every_problem_before_any_trial(tmp_path, config_file):
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        f"base: {config_file}\n"
        "set: {train.epocs: 5}\n"
        "space:\n"
        "  optimizer.lr: {log_uniform: [0, 0.1]}\n"
        "  model.layers[9].units: {int: [32, 512]}\n"
        "  model.layers[1].units: {int: [64, 64]}\n"
        "  optimizer.type: {choice: [sgd, adamm]}\n"
        "  train.batch_size: {choise: [50]}\n"
        "trials: 4\n"
        "samplr: tpe\n"
    )
    out = tmp_path / "out"
    result = invoke("sweep", spec, "--out", out)
    assert result.exit_code == 2 and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    expected = [
        "bad.yaml:2: set.train.epocs: unknown key", "did you mean 'epochs'",
        "bad.yaml:4: space.optimizer.lr: a log range needs low > 0",
        "bad.yaml:5: space.model.layers[9].units: model.layers[9] is not in the base config",
        "bad.yaml:6: space.model.layers[1].units: empty range [64, 64]",
        "bad.yaml:7: space.optimizer.type: \"adamm\" makes a config that fails",
        "bad.yaml:8: space.train.batch_size: unknown key 'choise'",
        "bad.yaml:10: samplr: unknown key", "did you mean 'sampler'",
    ]  # fmt: skip
    text = "\n".join(errors)
    assert all(needle in text for needle in expected), text
    assert len(errors) == 7
    assert not out.exists()  # no journal, no trial


def test_config_problems_of_the_space_are_found_with_the_base_fixed(tmp_path, config_file):
    spec = write_spec(tmp_path, config_file)  # base and set are fine here
    spec.write_text(
        spec.read_text().replace("optimizer.lr:", "optimizer.lrr:")
        + "sampler: grid\nmetric: val_acc\n"
    )
    result = invoke("sweep", spec, "--out", tmp_path / "out")
    assert result.exit_code == 2
    text = result.stderr
    assert "space.optimizer.lrr: the grid sampler needs a finite set" in text
    assert "metric: unknown metric 'val_acc'" in text and "did you mean 'val_accuracy'" in text
    assert "space.optimizer.lrr: 0.01 makes a config that fails: optimizer.lrr: unknown key" in text
    assert "0.3 makes a config" not in text  # the same problem for every value: once


def test_another_sweeps_checkpoints_are_never_overwritten(tmp_path, config_file):
    spec = write_spec(tmp_path, config_file, trials=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "trial-0000.npz").write_bytes(b"someone's run")
    result = invoke("sweep", spec, "--out", out)
    assert result.exit_code == 4, result.stderr
    assert "trial-0000.npz is not a trial of study 'spec'" in result.stderr
    assert (out / "trial-0000.npz").read_bytes() == b"someone's run"


def test_storage_urls_are_checked_and_passwords_never_shown(tmp_path):
    assert storage_of(None, tmp_path).where == str(tmp_path / "journal.log")
    url = Storage("postgresql://me:secret@db.example/sweeps", is_url=True)
    assert url.shown == "postgresql://me:***@db.example/sweeps" and url.lock_file is None
    assert Storage("sqlite:///x/s.db", is_url=True).lock_file == "x/s.db.ask"
    for bad, needle in [
        ("redis://localhost", "unsupported URL scheme"),
        ("sqlite:///:memory:", "in-memory"),
        (str(tmp_path), "is a folder"),
        (str(tmp_path / "no" / "journal.log"), "does not exist"),
    ]:
        with pytest.raises(Exception, match=needle):
            storage_of(bad, tmp_path)


def test_without_optuna_the_error_names_the_extra(tmp_path, config_file):
    spec = write_spec(tmp_path, config_file)
    code = "import sys; sys.modules['optuna'] = None; from bptrain.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "sweep", str(spec)],
        capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    assert "pip install 'bptrain[sweep]'" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_the_example_spec_is_sound():
    from bptrain.run.inputs import DataOptions
    from bptrain.scale.sweep.spec_configs import load_spec

    example = Path(__file__).resolve().parents[2] / "examples" / "sweep-mlp.yaml"
    spec, base = load_spec(str(example), lambda: "", data=DataOptions())
    assert spec.trials == 12 and base.config.data.dataset == "mnist"
    assert {p.path for p in spec.space} == {
        "optimizer.lr", "model.layers[1].units", "train.batch_size"
    }  # fmt: skip
