"""The state database's password: hidden in every form a state URL takes, given apart from the URL, and a libpq
connection string never taken for a file; the model pointer holds plain version names only. No database needed."""

import sqlite3
from pathlib import Path

import pytest

from recsys.model.registry import MAX_VERSION_CHARS, InvalidVersionError, check_version
from recsys.state.storage import has_password, is_conninfo
from recsys.state.store import (
    PASSWORD_ENV,
    PASSWORD_FILE_ENV,
    SqliteState,
    check_url,
    open_state,
    read_decisions,
    redact,
    sqlite_path,
    state_password,
)


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgres://u:p%40ss@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require"),
    ("postgresql://u:pa/ss@h/db", "postgresql://u:***@h/db"),  # unescaped: hidden however it is split
    ("postgresql:///db?host=h&password=secret", "postgresql:///db?host=h&password=***"),
    ("postgresql:///db?password=secret&host=h", "postgresql:///db?password=***&host=h"),
    ("postgresql:///db?host=h&pass%77ord=secret", "postgresql:///db?host=h&pass%77ord=***"),
    ("host=h dbname=d password=secret", "host=h dbname=d password=***"),
    ("host=h password='a b' dbname=d", "host=h password=*** dbname=d"),
    ("host=h password = 'it\\'s' user=u", "host=h password = *** user=u"),
    ("host=h password=a\\ b user=u", "host=h password=*** user=u"),
    ("host=h password='unterminated", "host=h password=***"),  # malformed: all from the password on
    ("host=h password=secret1 password=secret2", "host=h password=*** password=***"),
])
def test_redact_hides_the_password_in_every_form(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert has_password(url)


@pytest.mark.parametrize("url", ["postgresql://u@h/db", "postgresql:///db?host=h", "host=h dbname=d user=u",
                                 "sqlite:///state/x.sqlite3", "state/x.sqlite3", "postgresql://u:@h/db"])
def test_a_url_without_a_password(url: str) -> None:
    assert not has_password(url)
    assert redact(url) == url or url == "postgresql://u:@h/db"


def test_a_libpq_connection_string_is_a_postgresql_state_never_a_file() -> None:
    for conninfo in ("host=db.internal dbname=recsys password=secret", "  host = h  password='a b'",
                     "service=recsys", "hostaddr=10.0.0.1 dbname=d"):
        assert is_conninfo(conninfo) and sqlite_path(conninfo) is None
        check_url(conninfo)
    for path in ("state/x.sqlite3", "state/a=b.sqlite3", "./a=b", "/srv/state.sqlite3", "sqlite:///a=b"):
        assert not is_conninfo(path) and sqlite_path(path) is not None
    refused = {
        "host=h password=my secret": "not a libpq key=value connection string",  # an unquoted blank
        "host=h pasword=secret": "invalid connection option",
        "dbname=d password=secret": "names no database server",
        "a=b.sqlite3": "sqlite:///path",
    }
    for conninfo, reason in refused.items():
        with pytest.raises(ValueError, match=reason) as raised:
            check_url(conninfo)
        assert "secret" not in str(raised.value)


def test_feedback_from_a_libpq_connection_string_is_not_read_as_a_file(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="invalid connection option"):
        read_decisions("host=h nonsense=1")  # went to libpq, not to a file of that name
    assert list(tmp_path.iterdir()) == []


def test_the_password_apart_from_the_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.delenv(PASSWORD_FILE_ENV, raising=False)
    assert state_password() is None
    secret_file = tmp_path / "password"
    secret_file.write_text("from-a-file\n")
    assert state_password(password="given") == "given"
    assert state_password(password_file=secret_file) == "from-a-file"
    monkeypatch.setenv(PASSWORD_FILE_ENV, str(secret_file))
    assert state_password() == "from-a-file"
    monkeypatch.setenv(PASSWORD_ENV, "from-the-env")
    with pytest.raises(ValueError, match="not both"):
        state_password()
    monkeypatch.delenv(PASSWORD_FILE_ENV)
    assert state_password() == "from-the-env"
    (tmp_path / "empty").write_text(" \n")
    for unusable in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(ValueError, match=PASSWORD_FILE_ENV):
            state_password(password_file=unusable)


def test_open_state_joins_the_password_to_a_url_without_one(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("psycopg")
    monkeypatch.setenv(PASSWORD_ENV, "from-the-env")
    monkeypatch.delenv(PASSWORD_FILE_ENV, raising=False)
    # port 1: nothing listens, and nothing is waited for
    cases = {"host=127.0.0.1 port=1 dbname=d": "from-the-env",
             "postgresql://u@127.0.0.1:1/d": "from-the-env",
             "postgresql://u:own@127.0.0.1:1/d": "own",  # the URL's own password wins
             "postgresql:///d?host=127.0.0.1&port=1&password=own": "own"}
    for url, password in cases.items():
        state = open_state(url)
        try:
            assert state._params["password"] == password  # type: ignore[attr-defined]
            assert password not in state.url and "from-the-env" not in state.url
        finally:
            state.close()


def test_model_versions_are_plain_names() -> None:
    for version in ("20261124T081502417000Z", "v1", "v1.2-rc_3", "A" * MAX_VERSION_CHARS):
        assert check_version(version) == version
    for version in ("", ".", "..", "../x", "/srv/models/v1", "a/b", "a\\b", ".tmp-v4-abc", "v1\n", "v 1", "vé",
                    "A" * (MAX_VERSION_CHARS + 1)):
        with pytest.raises(InvalidVersionError, match="not a plain name"):
            check_version(version)


def test_the_pointer_is_never_set_to_a_path(tmp_path: Path) -> None:
    state = SqliteState(tmp_path / "state.sqlite3")
    try:
        state.set_model_pointer("v1")
        for version in ("../x", "/abs", ".."):
            with pytest.raises(ValueError, match="not a plain name"):
                state.set_model_pointer(version)
        assert state.model_pointer() == "v1"
    finally:
        state.close()
    assert sqlite3.connect(tmp_path / "state.sqlite3").execute("SELECT version FROM model_pointer").fetchall() == [
        ("v1",)]
