"""dlw tune: Optuna studies on the validation split, shared storages, resuming, Ctrl-C, the best run folder."""

from __future__ import annotations

import glob
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import run_dlw

# Short trials: enough epochs for penguins to separate, few enough for a quick test.
# The tuning machinery is tested on the lesson's MLP (fast); tabm's own space is tested in test_tabm.py.
QUICK = ["model.kind=mlp", "train.epochs=15", "train.early_stopping.patience=5"]
QUICK_CLI = [arg for item in QUICK for arg in ("--set", item)]


def _study(url: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=url)


def _finished(study):
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


# --- the config section --------------------------------------------------------------


@pytest.mark.parametrize(
    "override, expected",
    [
        ("tune.search_space={model.nope: {float: [0, 1]}}", "key 'tune.search_space.model.nope': not a config key"),
        ("tune.search_space={model.hidden_layer: {choice: [[8]]}}", "did you mean 'model.hidden_layers'"),
        ("tune.search_space={model.dropout: {gauss: [0, 1]}}", "unknown key 'tune.search_space.model.dropout.gauss'"),
        ("tune.search_space={model.dropout: {float: [0.5, 0.1]}}", "key 'tune.search_space.model.dropout': Value error, float: [low, high] needs low < high"),
        ("tune.search_space={model.dropout: {float: [0, 1.5]}}", "key 'tune.search_space.model.dropout': the value 1.5 is not valid"),
        ("tune.search_space={train.learning_rate: {float: [0, 0.1], log: true}}", "key 'tune.search_space.train.learning_rate': Value error, log: true needs low > 0"),
        ("tune.search_space={train.optimizer: {choice: [adam, lion]}}", "key 'tune.search_space.train.optimizer': the value 'lion' is not valid"),
        ("tune.search_space={data.split.seed: {int: [0, 9]}}", "key 'tune.search_space.data.split.seed': this key cannot be tuned"),
        ("tune.search_space={model.dropout: {choice: [0.1], float: [0, 1]}}", "expected exactly one of choice"),
        ("tune.metric=accuracy", "key 'tune.metric'"),
        ("tune.sampler=grid", "key 'tune.sampler'"),
        ("train.distribute=everywhere", "key 'train.distribute'"),
    ],
)
def test_bad_tune_section_names_the_key(override, expected):
    from dlw.spec import load_spec
    from dlw.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_spec("penguins", overrides=[override])
    assert expected in str(info.value)


def test_cli_config_error_is_one_line(tmp_path):
    result = run_dlw("tune", "penguins", "--set", "tune.search_space={model.nope: {float: [0, 1]}}", "--out", tmp_path / "t", timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "dlw: error: penguins (with --set): key 'tune.search_space.model.nope': not a config key ('nope' is not a key of model)"
    ]
    assert not (tmp_path / "t").exists()


def test_search_space_default_and_round_trip():
    import optuna

    from dlw.spec import load_spec, validate
    from dlw.tune import config_with, decode_params, search_space, suggest

    config = load_spec("penguins", overrides=["model.kind=mlp"])
    space = search_space(config)
    assert set(space) == {"model.hidden_layers", "model.dropout", "train.learning_rate", "train.batch_size"}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    values = suggest(trial, space)
    assert isinstance(values["model.hidden_layers"], list) and values["train.batch_size"] in (16, 32, 64)
    assert decode_params(trial.params, space) == values
    tuned = config_with(config, values)
    assert tuned.model.hidden_layers == values["model.hidden_layers"] and tuned.train.learning_rate == values["train.learning_rate"]
    # A config with a search space survives its own YAML.
    spaced = load_spec("penguins", overrides=["tune.search_space={model.dropout: {float: [0, 0.5]}, train.learning_rate: {float: [0.0001, 0.01], log: true}}"])
    again = validate(yaml.safe_load(spaced.to_yaml()), "again")
    assert again.tune.search_space == spaced.tune.search_space
    assert yaml.safe_load(spaced.to_yaml())["tune"]["search_space"]["train.learning_rate"] == {"float": [0.0001, 0.01], "log": True}


# --- a whole study, in this process ------------------------------------------------------


def test_tune_penguins_outputs_resume_and_untouched_test_split(tmp_path, monkeypatch):
    """3 trials; every trial trains on train rows and is scored on validation rows only; then 1 more."""
    import dlw
    from dlw import tune as tune_module
    from dlw import train as train_module
    from dlw.data.splits import Splits
    from dlw.spec import load_spec
    from dlw.console import QUIET

    seen = []
    real_train_model = train_module.fit_phases

    def spy(model, base, prepared, objective, config, console, callbacks=(), **rest):
        seen.append({"splits": sorted(prepared.inputs), "rows": {k: len(v) for k, v in prepared.targets.items()}, "callbacks": len(callbacks)})
        return real_train_model(model, base, prepared, objective, config, console, callbacks=callbacks, **rest)

    monkeypatch.setattr(train_module, "fit_phases", spy)
    out = tmp_path / "tuned"
    config = load_spec("penguins", overrides=[*QUICK, "tune.trials=3"])
    start = time.perf_counter()
    result = tune_module.tune(config, out=out, console=QUIET)
    first_seconds = time.perf_counter() - start

    for name in ("tuning.csv", "best.yaml", "history.png", "importances.png", "study.db", "tune.json"):
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "tuning.csv")
    assert len(table) == 3
    assert {"number", "state", "value", "duration_s", "model.hidden_layers", "model.dropout", "train.learning_rate", "train.batch_size"} <= set(table.columns)
    assert set(table["state"]) <= {"COMPLETE", "PRUNED"}
    assert (table["duration_s"] > 0).all()

    # Trials saw train and validation only; the one training that saw the test split is the best config's run.
    splits = Splits.load(out / "best" / "splits.json")
    trials, final = seen[:-1], seen[-1]
    assert len(trials) == 3 and all(call["callbacks"] == 1 for call in trials)
    for call in trials:
        assert call["splits"] == ["train", "validation"]
        assert call["rows"] == {"train": len(splits.train), "validation": len(splits.validation)}
    assert final["splits"] == ["test", "train", "validation"] and final["callbacks"] == 0

    # best.yaml is a config that trains the best trial again; best/ is a normal run folder.
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert (out / "best.yaml").read_text().startswith("# dlw tune: the best of 3 finished trial(s)")
    row = table.loc[table["number"] == result.best_number].iloc[0]
    assert best["train"]["learning_rate"] == pytest.approx(row["train.learning_rate"])
    assert best["train"]["batch_size"] == row["train.batch_size"]
    run = dlw.load(out / "best")
    assert run.config.train.learning_rate == pytest.approx(best["train"]["learning_rate"])
    rows = run.predict(pd.DataFrame({"bill_length_mm": [39.1], "bill_depth_mm": [18.7], "flipper_length_mm": [181.0],
                                     "body_mass_g": [3750.0], "island": ["Torgersen"], "sex": ["male"], "year": [2007]}))
    assert rows["prediction"].iloc[0] == "Adelie"
    assert run.metrics["test"]["accuracy"] >= 0.9
    # ... whose report tells the tuning story: the trials, the best settings, Optuna's plots.
    assert len(pd.read_csv(out / "best" / "tuning.csv")) == 3
    html = (out / "best" / "report.html").read_text()
    tuning = html[html.index("7. Tuning") : html.index("8. Performance")]
    assert "3</strong> trial(s) tried" in tuning and "Best settings" in tuning and "train.learning_rate" in tuning
    assert tuning.count("data:image/png;base64,") == 2

    # Resumable: the same storage, a larger target: the study continues from 3 to 4 trials.
    seen.clear()
    again = tune_module.tune(load_spec("penguins", overrides=[*QUICK, "tune.trials=4"]), out=out, console=QUIET)
    assert again.finished == 4 and len(pd.read_csv(out / "tuning.csv")) == 4
    assert len([c for c in seen if c["splits"] == ["train", "validation"]]) == 1
    # Nothing left to do: no trial, and the best run folder is reused when the best did not change.
    seen.clear()
    third = tune_module.tune(load_spec("penguins", overrides=[*QUICK, "tune.trials=4"]), out=out, console=QUIET)
    assert third.finished == 4 and third.best_number == again.best_number
    assert seen == []
    print(f"3 trials and the best run: {first_seconds:.1f} s")


def test_tune_refuses_a_folder_that_is_not_a_tuning_folder(tmp_path):
    from dlw.spec import load_spec
    from dlw.errors import DlwError
    from dlw.tune import tune

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DlwError, match="not a dlw tuning folder"):
        tune(load_spec("penguins", overrides=QUICK), out=tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


# --- several workers on one storage ----------------------------------------------------------


def _two_workers(url: str, out: Path, trials: int = 4) -> None:
    """Start two `dlw tune` processes on one storage and study; check the study they leave."""
    args = ["tune", "penguins", "--trials", trials, "--storage", url, "--study", "shared", "--out", out, *QUICK_CLI]
    env = dict(os.environ)
    workers = [subprocess.Popen([sys.executable, "-m", "dlw", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for _ in range(2)]
    outputs = [w.communicate(timeout=400) for w in workers]
    for worker, (stdout, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
    study = _study(url, "shared")
    finished = _finished(study)
    assert len(finished) >= trials
    params = [tuple(sorted((k, str(v)) for k, v in t.params.items())) for t in finished]
    assert len(set(params)) == len(params), "two trials drew the same parameters"
    # Both workers ran trials.
    for _, stderr in outputs:
        assert "trial " in stderr and f"/{trials} (#" in stderr, stderr[-2000:]
    assert (out / "best" / "run.json").is_file() and (out / "tuning.csv").is_file()


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tmp_path):
    _two_workers(f"sqlite:///{tmp_path / 'shared.db'}", tmp_path / "out")


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL cluster on loopback (Debian's postgresql package); skipped without it."""
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL not installed (no initdb/pg_ctl; Debian: apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'psycopg[binary]')")
    folder = tempfile.mkdtemp(prefix="dlw-pg-")
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the cluster")
        os.chmod(folder, 0o755)
        os.chown(folder, user.pw_uid, user.pw_gid)
        runuser = shutil.which("runuser")
        prefix = [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-c"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = os.path.join(folder, "data")

    def run(cmd):
        if prefix[:1] == ["su"]:
            cmd = [*prefix, " ".join(cmd)]
        else:
            cmd = [*prefix, *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    made = run([initdb, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"])
    if made.returncode != 0:
        pytest.skip(f"initdb failed: {made.stderr.strip()[-300:]}")
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={folder} -c fsync=off"
    started = run([pg_ctl, "-D", data, "-l", os.path.join(folder, "log"), "-o", f"'{options}'" if prefix[:1] == ["su"] else options, "-w", "start"])
    if started.returncode != 0:
        pytest.skip(f"pg_ctl start failed: {started.stderr.strip()[-300:]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run([pg_ctl, "-D", data, "-m", "immediate", "stop"])
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow  # CI time (stop 28): over 45 s in the default suite on 2 cores
def test_two_workers_share_one_postgresql_study(postgres_url, tmp_path):
    _two_workers(postgres_url, tmp_path / "out")


# --- Ctrl-C ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_marks_the_running_trial_failed_and_keeps_the_rest(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    # Trials of 100 epochs: with compiled programs cached, a 15-epoch trial ends in under a second, before the Ctrl-C lands in it.
    longer = ["--set", "train.epochs=100", "--set", "train.early_stopping=false"]
    cmd = [sys.executable, "-m", "dlw", "tune", "penguins", "--trials", "50", "--storage", url, "--study", "s", "--out", str(tmp_path / "out"), *QUICK_CLI, *longer]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    seen, deadline = [], time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        seen.append(line)
        if "trial 2/50" in line:  # two trials recorded, the third is running
            break
    else:
        proc.kill()
        pytest.fail("no trial finished in time:\n" + "".join(seen))
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    time.sleep(0.5)
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    text = "".join(seen + rest)
    assert "dlw: interrupted: trial " in text and "marked failed" in text, text[-2000:]
    assert "run the same command again to continue" in text
    from optuna.trial import TrialState

    study = _study(url, "s")
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert TrialState.RUNNING not in states
    assert len(_finished(study)) >= 2
    assert pd.read_csv(tmp_path / "out" / "tuning.csv").shape[0] == len(states)


# --- the bar -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_tuning_penguins_20_trials_bar(tmp_path):
    """20 trials of the default search space with pruning: under 2 minutes, and at least the default run's test accuracy."""
    start = time.perf_counter()
    tuned = run_dlw("tune", "penguins", "--trials", 20, "--out", tmp_path / "tuned", "--quiet", timeout=600)
    seconds = time.perf_counter() - start
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    default = run_dlw("train", "penguins", "--out", tmp_path / "default", "--quiet", timeout=600)
    assert default.returncode == 0, default.stderr[-3000:]
    import dlw

    best = dlw.load(tmp_path / "tuned" / "best").metrics["test"]["accuracy"]
    base = dlw.load(tmp_path / "default").metrics["test"]["accuracy"]
    table = pd.read_csv(tmp_path / "tuned" / "tuning.csv")
    print(f"20 trials: {seconds:.1f} s ({(table['state'] == 'PRUNED').sum()} pruned); best test accuracy {best:.4f}, default {base:.4f}")
    assert len(table) >= 20
    assert seconds < 120
    assert best >= base


def test_a_sibling_worker_writing_the_marker_does_not_make_the_folder_foreign(tmp_path):
    """Two workers start at once: one's half-written tune.json must not stop the other (a race seen in CI)."""
    from dlw.errors import DlwError
    from dlw.tune import check_out

    out = tmp_path / "out"
    out.mkdir()
    (out / ".tune.json.4242.tmp").write_text("{")
    check_out(out)  # no error
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DlwError, match="not a dlw tuning folder"):
        check_out(out)


HOLD_LOCK = """
import sys, time
from pathlib import Path
from dlw.runs import OutLock
lock = OutLock(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(float(sys.argv[2]))
lock.release()
"""


def test_a_worker_that_finds_the_best_run_being_written_waits_for_it(tmp_path):
    """Two workers finishing together: the one that finds the best folder's lock held waits, then trains or takes it."""
    from dlw.console import QUIET
    from dlw.errors import FolderBusy
    from dlw.runs import OutLock
    from dlw.spec import load_spec
    from dlw.tune import best_run

    best_dir = tmp_path / "best"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(best_dir), "3"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(FolderBusy, match="another dlw process"):
        OutLock(best_dir)
    started = time.perf_counter()
    run = best_run(load_spec("penguins", overrides=QUICK), best_dir, QUIET)
    holder.wait(timeout=30)
    assert time.perf_counter() - started >= 2.0, "it waited for the sibling instead of failing"
    assert run.path == best_dir and (best_dir / "metrics.json").is_file()
