"""``kedro run`` (the project's cli.py): an error is one message, its traceback in the log file; plain
log lines off a terminal."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner

from scgapfill import cli
from scgapfill.params import ParameterError

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The root logger's only handler: a log file (the console switch is tested on its own below)."""
    path = tmp_path / "info.log"
    handler = logging.FileHandler(path, delay=True)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    monkeypatch.setattr(logging.getLogger(), "handlers", [handler])
    monkeypatch.setattr(cli, "plain_console_off_a_terminal", lambda: False)
    yield path
    handler.close()


@pytest.mark.slow
def test_an_error_prints_its_message_and_logs_its_traceback(kedro_project: Path, log_file: Path) -> None:
    args = ["--pipelines=data_processing", "--params=qc.min_genes=-1"]
    result = CliRunner().invoke(cli.run, args)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == "Error: ParameterError: Invalid parameter(s); fix them in conf/base/parameters*.yml or --params:"
    assert lines[1] == "  qc.min_genes: Input should be greater than or equal to 0 (got -1)"
    assert lines[2] == f"(the traceback is in {log_file}; `kedro run --verbose` prints it)"
    assert len(lines) == 3 and "Traceback" not in result.output
    logged = log_file.read_text()
    assert "ERROR kedro run failed\nTraceback (most recent call last):" in logged
    assert "in validate_all" in logged and "qc.min_genes" in logged

    verbose = CliRunner().invoke(cli.run, [*args, "--verbose"])
    assert isinstance(verbose.exception, ParameterError)  # raised as before, traceback and all


def test_without_a_log_file_the_message_points_to_verbose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    try:
        raise FileNotFoundError("input.path='/nonexistent.h5ad' does not exist")
    except FileNotFoundError as error:
        message = cli.short_error(error).format_message()
    assert message == ("FileNotFoundError: input.path='/nonexistent.h5ad' does not exist\n"
                       "(`kedro run --verbose` prints the traceback)")


def _project_logging() -> SimpleNamespace:
    return SimpleNamespace(data=yaml.safe_load((REPO_ROOT / "conf" / "logging.yml").read_text()))


@pytest.mark.parametrize("tty", [True, False])
def test_off_a_terminal_the_log_is_plain_lines(monkeypatch: pytest.MonkeyPatch, tty: bool) -> None:
    applied = []
    monkeypatch.setattr(cli, "LOGGING", _project_logging())
    monkeypatch.setattr(cli, "configure_logging", applied.append)
    stream = io.StringIO()
    stream.isatty = lambda: tty
    assert cli.plain_console_off_a_terminal(stream) is (not tty)
    if tty:
        assert applied == []
    else:
        assert applied[0]["root"]["handlers"] == ["console", "info_file_handler"]
        assert applied[0]["handlers"]["console"]["class"] == "logging.StreamHandler"
    assert cli.LOGGING.data["root"]["handlers"] == ["rich", "info_file_handler"]  # the loaded config is untouched


def test_a_logging_config_of_ones_own_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    applied = []
    monkeypatch.setattr(cli, "LOGGING", SimpleNamespace(data={"version": 1, "root": {"handlers": ["mine"]},
                                                              "handlers": {"mine": {}}}))
    monkeypatch.setattr(cli, "configure_logging", applied.append)
    assert cli.plain_console_off_a_terminal(io.StringIO()) is False and applied == []


def test_run_keeps_every_option_of_kedros_run() -> None:
    from kedro.framework.cli.project import run as kedro_run

    ours = {p.name for p in cli.run.params}
    assert {p.name for p in kedro_run.params} | {"verbose"} == ours
