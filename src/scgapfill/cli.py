"""``kedro run`` as Kedro's own, with short errors and a log fit for a file or a pipe.

Kedro takes a project's ``cli.py`` commands over its own (https://docs.kedro.org/en/stable/extend/
common_use_cases/, use case 3); ``python -m scgapfill`` finds this ``run`` too. Every option of
Kedro's ``run`` is kept as it is, and two behaviours are added:

- An error ends the run with its one-line message, not ~200 lines of traceback. The traceback goes to
  the log file of ``conf/logging.yml`` (``info.log``); ``--verbose`` prints it as before.
- A run stopped by SIGTERM or Ctrl-C ends on one line, ``stopped by SIGTERM; status KILLED; rerun to
  resume from epoch N``, with the shell's code for the signal (143, 130), whatever a plugin's error
  hook raised on the way out.
- When stdout is not a terminal, the log goes through the plain ``console`` handler of
  ``conf/logging.yml`` instead of ``rich``: rich wraps every line at 80 columns off a terminal (a
  result table became unreadable), pads it with spaces and colours nothing there anyway.

Imported by every ``kedro`` command of the project: keep torch and the pipelines out of it.
"""

from __future__ import annotations

import copy
import logging
import sys
import traceback
from typing import TYPE_CHECKING, Any

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.framework.project import LOGGING, configure_logging

if TYPE_CHECKING:
    from scgapfill.glue.run_record import Terminated


@click.group(name="scgapfill")
def cli() -> None:
    """The project's commands (``kedro run`` with short errors)."""


def plain_console_off_a_terminal(stream: Any = None) -> bool:
    """Swap the root logger's ``rich`` handler for ``console`` when ``stream`` (stdout) is no terminal."""
    stream = sys.stdout if stream is None else stream
    if getattr(stream, "isatty", lambda: False)():
        return False
    config = copy.deepcopy(dict(LOGGING.data))
    root = config.get("root", {})
    if "rich" not in root.get("handlers", []) or "console" not in config.get("handlers", {}):
        return False  # a logging config of the user's own (KEDRO_LOGGING_CONFIG): left as it is
    root["handlers"] = ["console" if name == "rich" else name for name in root["handlers"]]
    configure_logging(config)
    return True


def _log_files() -> list[logging.FileHandler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


def _log_traceback(error: BaseException) -> list[logging.FileHandler]:
    """Write ``error``'s traceback to the log files of ``conf/logging.yml``; those files."""
    record = logging.LogRecord(__name__, logging.ERROR, __file__, 0, "kedro run failed", None,
                               (type(error), error, error.__traceback__))
    files = _log_files()
    for handler in files:
        handler.handle(record)
    return files


def short_error(error: BaseException) -> click.ClickException:
    """The error's type and message for the terminal; its traceback to the log files only."""
    files = _log_traceback(error)
    hint = (f"the traceback is in {', '.join(h.baseFilename for h in files)}; `kedro run --verbose` prints it"
            if files else "`kedro run --verbose` prints the traceback")
    return click.ClickException(f"{type(error).__name__}: {error}\n({hint})")


def stopped(stop: Terminated, error: BaseException, verbose: bool = False) -> click.exceptions.Exit:
    """A run stopped by SIGTERM or Ctrl-C: its one line on stderr, the shell's exit code for the signal.

    ``error`` is what reached the command: the stop itself, or the error of a hook that failed while
    handling it (kedro-mlflow's ``on_pipeline_error`` raises ``UnboundLocalError`` when the run it
    would end FAILED was already ended KILLED). Whatever it is, the line is about the stop; the
    traceback goes to the log files (and to stderr first with ``--verbose``).
    """
    _log_traceback(error)
    if verbose:
        traceback.print_exception(error)
    click.echo(stop.summary(), err=True)
    return click.exceptions.Exit(stop.exit_code)


def _run(verbose: bool, **kwargs: Any) -> Any:
    from scgapfill.glue.run_record import termination

    plain_console_off_a_terminal()
    try:
        return kedro_run.callback(**kwargs)
    except click.ClickException:
        raise  # Kedro's own command-line errors are short already
    except Exception as error:
        stop = termination(error)
        if stop is not None:
            raise stopped(stop, error, verbose) from error
        if verbose:
            raise
        raise short_error(error) from error


run = click.Command(
    name="run",
    callback=_run,
    params=[
        *kedro_run.params,
        click.Option(["--verbose", "-v"], is_flag=True, help="Print the full traceback of an error."),
    ],
    help=kedro_run.help,
    short_help=kedro_run.short_help,
    context_settings=kedro_run.context_settings,
)
cli.add_command(run)
