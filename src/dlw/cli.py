"""The ``dlw`` command: a thin layer over the Python API, one API call per command.

Heavy imports (keras, jax, pandas) happen inside the commands, so ``dlw --help``
answers at once. Every bad input ends with exit status 2 and one line on stderr;
``--debug`` shows the traceback.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    name="dlw",
    help="The deep-learning workflow on your own data: formulate, prepare, train, measure, predict, and honestly.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
_STATE = {"debug": False}


def _reports_errors(command):
    """Turn any exception into one line on stderr and an exit status (2 for bad input)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            print("dlw: interrupted; no run folder was left half-written (a training's progress is kept: add --resume)", file=sys.stderr)
            raise typer.Exit(130) from None
        except Exception as exc:
            from dlw.errors import exit_status_and_line

            if _STATE["debug"]:
                import traceback

                traceback.print_exc()
            status, line = exit_status_and_line(exc)
            print(line, file=sys.stderr)
            raise typer.Exit(status) from None

    return wrapper

SOURCE_HELP = (
    "A config (.yaml), a built-in data set (penguins, iris, wine, breast_cancer, diabetes, digits), a CSV/Parquet file, "
    "a folder of images with one subfolder per class, or a CSV of image paths."
)
TargetOpt = typer.Option(None, "--target", "-t", help="Column to predict (needed with a data file).")
SetOpt = typer.Option([], "--set", "-s", help="Override a config key: --set train.epochs=50 (value read as YAML). Repeatable.")
OutOpt = typer.Option(None, "--out", "-o", help="Run folder to write (default runs/<name>).")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace an existing run folder or output file (and discard a killed run's progress).")
ResumeOpt = typer.Option(False, "--resume", help="Carry on a killed training of this --out from its last completed epoch.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print nothing but errors.")
TrackOpt = typer.Option(
    [], "--track", help="Track the run: mlflow or tensorboard (repeatable; pip install 'dlw[track]'); sets track.mlflow / track.tensorboard."
)


def _with_tracking(overrides, tools) -> list[str]:
    """``--set`` overrides plus ``track.<tool>=true`` for each ``--track`` tool (the config's ``track`` section decides)."""
    from dlw.config import TrackConfig
    from dlw.errors import ConfigError

    known = [name for name, field in TrackConfig.model_fields.items() if field.annotation is bool]
    for tool in tools:
        if tool not in known:
            raise ConfigError(f"--track {tool}: expected one of {', '.join(known)}; received {tool!r}")
    return [*overrides, *(f"track.{tool}=true" for tool in tools)]


def _workflow(source: str, target, overrides, quiet: bool):
    from dlw.workflow import Workflow

    return Workflow.from_config(source, target=target, overrides=list(overrides), quiet=quiet)


@app.command()
@_reports_errors
def run(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    target: Optional[str] = TargetOpt,
    set_: list[str] = SetOpt,
    out: Optional[Path] = OutOpt,
    overwrite: bool = OverwriteOpt,
    resume: bool = ResumeOpt,
    quiet: bool = QuietOpt,
    track: list[str] = TrackOpt,
):
    """All the steps in one command: train, measure, data sufficiency, and report.html."""
    wf = _workflow(source, target, _with_tracking(set_, track), quiet)
    run_ = wf.train(out=out, overwrite=overwrite, sufficiency=True, report=True, resume=resume)
    wf.console.say(f"report: {run_.path / 'report.html'}")


@app.command()
@_reports_errors
def train(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    target: Optional[str] = TargetOpt,
    set_: list[str] = SetOpt,
    out: Optional[Path] = OutOpt,
    overwrite: bool = OverwriteOpt,
    resume: bool = ResumeOpt,
    quiet: bool = QuietOpt,
    track: list[str] = TrackOpt,
):
    """Steps 1-6 and 8: prepare the data, choose the loss, build, train, measure; write a run folder."""
    wf = _workflow(source, target, _with_tracking(set_, track), quiet)
    wf.train(out=out, overwrite=overwrite, resume=resume)


@app.command()
@_reports_errors
def tune(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    trials: Optional[int] = typer.Option(None, "--trials", "-n", help="Finished trials the study should hold, all workers together (tune.trials)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Seconds after which this worker starts no new trial (tune.timeout)."),
    storage: Optional[str] = typer.Option(
        None, "--storage", help="Optuna storage URL shared by workers: sqlite:///study.db, postgresql://user@host/db (default: OUT/study.db)."
    ),
    study: Optional[str] = typer.Option(None, "--study", help="Study name in the storage (default: the config's name)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Tuning folder to write (default runs/<name>-tune)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete the study of that name in the storage and start afresh."),
    set_: list[str] = SetOpt,
    target: Optional[str] = TargetOpt,
    quiet: bool = QuietOpt,
    track: list[str] = TrackOpt,
):
    """Step 7: search hyperparameters with Optuna on the validation split; retrain the best as OUT/best.

    Running the same command again continues the study; several processes (or machines) given the
    same --storage and --study share it.
    """
    from dlw.spec import load_spec
    from dlw.console import Console
    from dlw.tune import TuneInterrupted, tune as run_tune

    overrides = _with_tracking(set_, track)
    if trials is not None:
        overrides.append(f"tune.trials={trials}")
    if timeout is not None:
        overrides.append(f"tune.timeout={timeout}")
    config = load_spec(source, target, overrides)
    try:
        run_tune(config, out=out, storage=storage, study_name=study, overwrite=overwrite, console=Console(quiet=quiet))
    except TuneInterrupted as exc:
        print(f"dlw: {exc}", file=sys.stderr)
        raise typer.Exit(130) from None


@app.command()
@_reports_errors
def init(
    data: str = typer.Argument(..., help="A CSV/Parquet file or a built-in data set."),
    target: Optional[str] = TargetOpt,
    output: Optional[Path] = typer.Option(None, "--output", help="Write the config here instead of stdout."),
    overwrite: bool = OverwriteOpt,
):
    """Steps 1-2: look at the data and print a commented config with what was inferred."""
    from dlw.init import write_config

    text = write_config(data, target, output)
    if output is None:
        sys.stdout.write(text)
        return
    _check_output(output, overwrite)
    from dlw.runs import write_atomic

    write_atomic(output, text)
    print(f"wrote {output}", file=sys.stderr)


@app.command()
@_reports_errors
def evaluate(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A run folder written by dlw train."),
    data: Optional[Path] = typer.Option(
        None, "--data", help="Labelled CSV/Parquet (image run: a class-folder tree or CSV of paths) to measure on instead of the test split."
    ),
    output: Optional[Path] = typer.Option(None, "--output", help="Also write the metrics as JSON here."),
    overwrite: bool = OverwriteOpt,
    quiet: bool = QuietOpt,
):
    """Step 8 again: the network and the baselines on the test split, or on new labelled data."""
    from dlw.console import Console
    from dlw.runs import write_json
    from dlw.workflow import load

    if output is not None:
        _check_output(output, overwrite)
    run_ = load(run_dir)
    metrics = run_.evaluate(data, console=Console(quiet=quiet))
    if output is not None:
        write_json(output, metrics)
        print(f"wrote {output}", file=sys.stderr)


@app.command()
@_reports_errors
def predict(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A run folder written by dlw train, or a bundle written by dlw share."),
    data: Path = typer.Argument(..., help="CSV/Parquet rows with the training's input columns; for an image run a folder, a CSV of paths or an image."),
    output: Optional[Path] = typer.Option(None, "--output", help="CSV to write (default: stdout)."),
    overwrite: bool = OverwriteOpt,
    quiet: bool = QuietOpt,
):
    """Step 9: predictions for new rows, with one probability column per class."""
    from dlw.console import Console
    from dlw.runs import write_atomic
    from dlw.workflow import load

    if output is not None:
        _check_output(output, overwrite)
    console = Console(quiet=quiet)
    run_ = _load_said(run_dir, console, load)
    predictions = run_.predict(data, console=console, origin=str(data))
    if output is None:
        predictions.to_csv(sys.stdout, index=False)
        return
    write_atomic(output, predictions.to_csv(index=False))
    console.say(f"wrote {len(predictions)} prediction(s) to {output}")


@app.command()
@_reports_errors
def report(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A run folder written by dlw train or dlw run."),
):
    """Write RUN/report.html: one self-contained page, a section per workflow step."""
    from dlw.report import write_report
    from dlw.workflow import load

    load(run_dir)  # a clear error for anything but a run folder
    path = write_report(run_dir)
    print(f"wrote {path}", file=sys.stderr)


def _load_said(path: Path, console, load):
    """``load(path)`` with its warnings (a bundle from other dlw/Keras versions) said as one line each."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_ = load(path)
    for warning in caught:
        console.warn(str(warning.message))
    return run_


@app.command()
@_reports_errors
def card(run_dir: Path = typer.Argument(..., metavar="RUN", help="A run folder written by dlw train or dlw run.")):
    """Step 10: write (or rewrite) RUN/MODEL_CARD.md from the run's own files; for runs made before cards existed."""
    from dlw.card import write_card

    print(f"wrote {write_card(run_dir)}", file=sys.stderr)


@app.command()
@_reports_errors
def share(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A run folder written by dlw train or dlw run."),
    output: Optional[Path] = typer.Option(None, "--output", help="The bundle to write (default: RUN's name + .dlw.zip, here)."),
    overwrite: bool = OverwriteOpt,
):
    """Step 10: pack what prediction needs (model, schema, unfamiliar-input state, card, metrics, config) into one file."""
    from dlw.bundle import default_output, write_bundle

    output = output or default_output(run_dir)
    _check_output(output, overwrite)
    path = write_bundle(run_dir, output, overwrite=overwrite)
    print(f"wrote {path} ({path.stat().st_size:,} bytes); use it with `dlw predict {path} new.csv` or dlw.load(...)", file=sys.stderr)


@app.command()
@_reports_errors
def compare(
    runs: list[Path] = typer.Argument(..., metavar="RUN...", help="Run folders written by dlw train, dlw run or dlw tune, or bundles written by dlw share."),
    output: Optional[Path] = typer.Option(None, "--output", help="Also write the comparison as CSV here."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write it as a self-contained HTML page here."),
    overwrite: bool = OverwriteOpt,
):
    """Step 10: runs side by side: data, model, main metric vs best baseline, verdict, time, the config keys that differ."""
    from dlw.compare import compare_runs, comparison_html, print_comparison
    from dlw.runs import write_atomic

    for path in (output, html):
        if path is not None:
            _check_output(path, overwrite)
    frame = compare_runs(runs)
    print_comparison(frame)
    if output is not None:
        write_atomic(output, frame.to_csv(index=False))
        print(f"wrote {output}", file=sys.stderr)
    if html is not None:
        write_atomic(html, comparison_html(frame))
        print(f"wrote {html}", file=sys.stderr)


@app.command()
@_reports_errors
def sufficiency(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    target: Optional[str] = TargetOpt,
    set_: list[str] = SetOpt,
    out: Optional[Path] = OutOpt,
    overwrite: bool = OverwriteOpt,
    quiet: bool = QuietOpt,
):
    """Would more data help? Train on 25%, 50% and 100% of the train split and compare (writes a run folder)."""
    wf = _workflow(source, target, set_, quiet)
    wf.train(out=out, overwrite=overwrite, sufficiency=True)


@app.command()
@_reports_errors
def doctor():
    """Is the install working? Versions, backend, devices and a 2-second smoke fit."""
    from dlw.doctor import run_doctor

    raise typer.Exit(run_doctor())


@app.command()
@_reports_errors
def schema(markdown: bool = typer.Option(False, "--markdown", help="Print the key reference as a Markdown table instead.")):
    """Print the JSON Schema of the config file."""
    import json

    if markdown:
        from dlw.reference import config_reference

        sys.stdout.write(config_reference())
        return
    from dlw.spec import json_schema

    print(json.dumps(json_schema(), indent=2))


@app.command()
@_reports_errors
def serve(
    source: str = typer.Argument(..., metavar="RUN|BUNDLE", help="A run folder, or a bundle written by dlw share."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; 0.0.0.0 exposes the model to the network."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    max_rows: int = typer.Option(1000, "--max-rows", help="Most rows (or images) one request may hold; more is a 422."),
    quiet: bool = QuietOpt,
):
    """Serve a run over HTTP (FastAPI): POST /predict, /predict/image, GET /health, /metadata, /docs."""
    from dlw.console import Console
    from dlw.serve import serve as run_server

    run_server(source, host=host, port=port, max_rows=max_rows, console=Console(quiet=quiet))


@app.command()
@_reports_errors
def export(
    run_dir: str = typer.Argument(..., metavar="RUN|BUNDLE", help="A run folder, or a bundle written by dlw share."),
    format_: str = typer.Option("onnx", "--format", help="onnx or savedmodel."),
    output: Path = typer.Option(..., "--output", help="File (onnx) or folder (savedmodel) to write; its preprocessing JSON goes beside it."),
    overwrite: bool = OverwriteOpt,
    quiet: bool = QuietOpt,
):
    """Export the network through Keras's Model.export, with a JSON of the preprocessing it expects."""
    from dlw.console import Console
    from dlw.export import export_run

    _check_output(output, overwrite)
    export_run(run_dir, format_, output, console=Console(quiet=quiet))


def _version(value: bool):
    if value:
        from dlw.version import __version__

        print(f"dlw {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
):
    _STATE["debug"] = debug


def _check_output(path: Path, overwrite: bool) -> None:
    from dlw.errors import DlwError

    if path.exists() and not overwrite:
        raise DlwError(f"{path}: already exists; pass --overwrite to replace it, or choose another --output")
    if not path.parent.exists():
        raise DlwError(f"{path.parent}: folder does not exist; create it or choose another --output")


def main() -> None:
    import warnings

    # NumPy's arithmetic warnings (overflow, invalid value) are not for the user: dlw checks the
    # numbers itself and says what is wrong in one line (issue 14).
    warnings.simplefilter("ignore", RuntimeWarning)
    warnings.showwarning = say_warning_once
    app(prog_name="dlw")


_SAID: set = set()  # the warnings said in this process


def say_warning_once(message, category, filename, lineno, file=None, line=None) -> None:
    """A library's warning as one line, once per distinct text: no source path, no advice pages."""
    lines = str(message).strip().splitlines()
    text = lines[0] if lines else category.__name__
    if text not in _SAID:
        _SAID.add(text)
        print(f"warning: {text} ({category.__name__})", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
