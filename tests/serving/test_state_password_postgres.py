"""The state database's password given apart from the URL, against a real server that asks for it: a private
PostgreSQL cluster (as in ``test_replicas.py``) whose role has a password and whose TCP logins need it.

Run with ``make test-postgres`` (``pytest -m postgres``); the PostgreSQL server binaries must be installed."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys.state.storage import StateUnavailableError
from recsys.state.store import PASSWORD_ENV, PASSWORD_FILE_ENV, open_state

pytestmark = pytest.mark.postgres
PASSWORD = "it's a long one"  # a blank and a quote: it must reach libpq as it is


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    psycopg = pytest.importorskip("psycopg")
    from tests.serving.test_replicas import Cluster, _postgres_bin

    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.fail("PostgreSQL server binaries not found: `make test-postgres` installs them")
    root = Path(tempfile.mkdtemp(prefix="recsys-pg-"))
    try:
        server = Cluster(root, bin_dir)
        server.start()
        with psycopg.connect(server.url, autocommit=True) as connection:  # trusted until the reload below
            connection.execute(psycopg.sql.SQL("ALTER ROLE recsys PASSWORD {}").format(psycopg.sql.Literal(PASSWORD)))
            (server.data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
            connection.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        yield server
        server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_password_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in (PASSWORD_ENV, PASSWORD_FILE_ENV, "PGPASSWORD", "PGPASSFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")  # not the user's ~/.pgpass


def _works(url: str, **password: str | Path) -> bool:
    state = open_state(url, **password)  # type: ignore[arg-type]
    try:
        state.set_model_pointer("v1")
        return state.model_pointer() == "v1"
    except StateUnavailableError:
        return False
    finally:
        state.close()


def test_the_password_from_a_file_the_environment_or_libpq(cluster: object, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    url: str = cluster.url  # type: ignore[attr-defined]
    port: int = cluster.port  # type: ignore[attr-defined]
    conninfo = f"host=127.0.0.1 port={port} user=recsys dbname=postgres"
    assert not _works(url)  # the server asks for a password
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    assert _works(url, password_file=secret) and _works(conninfo, password=PASSWORD)
    monkeypatch.setenv(PASSWORD_FILE_ENV, str(secret))
    assert _works(url) and _works(conninfo)
    monkeypatch.delenv(PASSWORD_FILE_ENV)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    assert _works(url)
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    assert not _works(url)
    monkeypatch.delenv(PASSWORD_ENV)
    monkeypatch.setenv("PGPASSWORD", PASSWORD)  # libpq's own still works
    assert _works(url)
