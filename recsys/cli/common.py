"""What every command group shares: the stderr console and the error exit."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False)
    return typer.Exit(code)


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
