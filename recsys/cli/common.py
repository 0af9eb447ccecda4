"""What every command group shares: the stderr console, the exit statuses and the error exit (one line, a traceback
only with ``--debug``), a configuration error as one line, the service settings, tables printed whole in a pipe, and
``--json`` documents on stdout."""

from __future__ import annotations

from contextlib import contextmanager
from enum import IntEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup
from typer.exceptions import TyperException

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from pydantic import ValidationError
    from typer._click import Context  # typer vendors click: the Context its groups invoke has no public name

    from recsys.state.store import StateStore
    from serving.settings import Settings

console = Console(stderr=True)


class ExitStatus(IntEnum):
    """The exit statuses of every ``recsys`` command, so that a scheduler can tell a refusal from a crash
    (docs/operations.md#exit-statuses)."""

    done = 0
    refused = 1  # the quality gate kept the current model
    bad_input = 2  # bad options, data, config or model: a one-line message says which
    internal_error = 3  # a bug or a failing machine: one line, the traceback with --debug
    interrupted = 130  # Ctrl-C (SIGINT), as shells report it


def fail(message: str, code: int = ExitStatus.bad_input) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False)
    return typer.Exit(code)


def print_table(table: Table, *, stderr: bool = True, min_width: int = 0) -> None:
    """Print ``table`` whole. In a pipe or a file it is as wide as its widest row, so that no cell is cut or wrapped
    (a version copied from a log must be whole); on a terminal it fits the terminal, or ``min_width`` when wider
    (one line per row), wrapping text where it must."""
    out = Console(stderr=stderr)
    if out.is_terminal:
        width = max(out.width, min_width)
    else:
        width = max(out.measure(table, options=out.options.update_width(_UNLIMITED)).maximum, min_width, out.width)
    Console(stderr=stderr, width=width).print(table)


def print_json(document: object) -> None:
    """``document`` as one JSON document on standard output (``--json``): what a script reads, alone there."""
    import json

    typer.echo(json.dumps(document, indent=2, default=str))


#: the width a table is measured in before it is printed to a pipe: more than any table needs
_UNLIMITED = 100_000

#: ``--progress/--no-progress`` of the commands that run for minutes (see training.progress)
ProgressOption = Annotated[bool, typer.Option(
    help="progress on stderr: bars on a terminal, timestamped lines elsewhere (a log); --no-progress: none")]

#: ``ctx.meta`` key of the global ``--debug`` flag
DEBUG = "recsys.debug"


class Commands(TyperGroup):
    """The ``recsys`` group: an exception no command turned into a message ends the run with one line and
    :attr:`ExitStatus.internal_error` (its traceback too with ``--debug``), never with status 1, which means a
    refusal. Errors about what the user gave (data, a model directory, a setting) that slipped past a command's
    own handling exit :attr:`ExitStatus.bad_input`."""

    def invoke(self, ctx: Context) -> Any:
        import errno

        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):  # an exit chosen, or a usage error (2)
            raise
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # the reader of a pipe went away (| head): click's own handling
                raise
            raise self._stop(ctx, exc) from exc
        except Exception as exc:
            raise self._stop(ctx, exc) from exc

    @staticmethod
    def _stop(ctx: Context, exc: Exception) -> typer.Exit:
        import traceback

        from recsys.domain.schema import DataValidationError
        from recsys.model.artifact import ArtifactError

        if isinstance(exc, DataValidationError | ArtifactError):  # by definition about the data or model given
            return fail(escape(str(exc)))
        lines = str(exc).strip().splitlines()
        message = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        if ctx.meta.get(DEBUG):
            console.print("".join(traceback.format_exception(exc)).rstrip(), markup=False, highlight=False,
                          soft_wrap=True)
            hint = ""
        else:
            hint = " (run `recsys --debug ...` for the traceback)"
        return fail(escape(f"internal error: {message}{hint}"), ExitStatus.internal_error)


def option_name(field: str) -> str:
    """A field as the command-line option that sets it: ``max_drop`` as ``--max-drop``."""
    return "--" + field.replace("_", "-")


def setting_name(field: str) -> str:
    """A service setting as the environment variable that sets it: ``cors_origins`` as ``RECSYS_CORS_ORIGINS``."""
    return "RECSYS_" + field.upper()


def describe_validation_error(exc: ValidationError, field_name: Callable[[str], str] = str) -> str:
    """A pydantic error as one line, each problem as ``field.path: message (got value)``, the field named by
    ``field_name`` (e.g. :func:`option_name`)."""
    problems = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"])
        if path:
            path = field_name(path)
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] not in ("json_invalid", "missing") and "input" in error:
            shown = repr(error["input"])
            message += f" (got {shown if len(shown) <= 40 else shown[:37] + '...'})"
        problems.append(f"{path}: {message}" if path else message)
    return "; ".join(problems)


def service_settings(**given: object) -> Settings:
    """The service's settings: the ``RECSYS_*`` variables (or ``.env``), with the options the command line gave
    (those left out, None, are not passed, so that the variable or the default applies); a bad value exits 2 with
    one line naming the variable."""
    from pydantic import ValidationError

    from serving.settings import Settings

    try:
        return Settings(**{name: value for name, value in given.items() if value is not None})
    except ValidationError as exc:
        raise fail(escape(describe_validation_error(exc, setting_name))) from exc


def warn_password_in_argv(option: str, url: str | None) -> None:
    """Warn (on stderr) when a state URL given on the command line holds a password: any user of the host can
    read a process's arguments (``ps``, ``/proc``). The command still runs."""
    from recsys.state.storage import has_password
    from recsys.state.store import PASSWORD_ENV, PASSWORD_FILE_ENV

    if url is not None and has_password(url):
        console.print(f"[bold yellow]warning:[/] the {option} URL holds a password, which every user of this host "
                      f"can read in the process list: leave it out and set {PASSWORD_FILE_ENV} (a file holding "
                      f"it) or {PASSWORD_ENV} instead (PostgreSQL's PGPASSFILE and PGPASSWORD work too)",
                      soft_wrap=True, highlight=False, markup=True)


StateOption = Annotated[str | None, typer.Option(
    "--state", help="state URL (sqlite:///path or postgresql://user@host/db); default: the server's "
                    "(RECSYS_STATE_URL, else RECSYS_STATE_PATH)")]


@contextmanager
def state_store(url: str | None, what: str) -> Iterator[StateStore]:
    """The shared state ``--state`` names (else the server's settings), closed on exit; ``what`` lives there
    (for the message when none is set). An unreachable database or a bad URL fails the command with a message."""
    from recsys.state.storage import StateUnavailableError
    from recsys.state.store import open_state

    warn_password_in_argv("--state", url)
    location = url if url is not None else service_settings().state_location()
    if location is None:
        raise fail(f"{what} live in the state database: give --state or set RECSYS_STATE_URL / RECSYS_STATE_PATH")
    try:
        state = open_state(location)
    except ValueError as exc:
        raise fail(f"--state: {exc}") from exc
    try:
        yield state
    except StateUnavailableError as exc:
        raise fail(str(exc)) from exc
    finally:
        state.close()
