"""`recsys keys`: the key is printed once, as the last line; only its hash is stored; names and scopes are
checked; revocation is final; bad input exits 2 with a message."""

from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from recsys.cli import app
from recsys.state.keys import Keyring, hash_key
from recsys.state.store import open_state


def _keys(*args: str) -> Result:
    """``recsys keys ARGS`` in this process, standard output and error apart."""
    return CliRunner().invoke(app, ["keys", *args])


def test_create_list_revoke(tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    made = _keys("create", "--name", "storefront", "--scope", "read,write", "--state", state)
    assert made.exit_code == 0, made.output
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("rsk_") and len(key) > 40 and made.stdout.strip() == key, "the key alone on stdout"
    store = open_state(state)
    try:
        (stored,) = store.api_keys()
        assert stored.name == "storefront" and stored.scopes == {"read", "write"} and stored.key_hash == hash_key(key)
        assert Keyring(store.api_keys()).find(key) == stored
        listing = _keys("list", "--state", state)
        assert "storefront" in listing.stderr and "read,write" in listing.stderr and key not in listing.stderr
        assert _keys("revoke", "storefront", "--state", state).exit_code == 0
        assert Keyring(store.api_keys()).find(key) is None
        again = _keys("revoke", "storefront", "--state", state)
        assert again.exit_code == 2 and "no active key named 'storefront'" in again.stderr
        assert "storefront" not in _keys("list", "--state", state).stderr
        assert "storefront" in _keys("list", "--revoked", "--state", state).stderr
        renewed = _keys("create", "--name", "storefront", "--scope", "read", "--state", state)
        assert renewed.exit_code == 0 and len(store.api_keys()) == 2, "a revoked key's name can be used again"
    finally:
        store.close()


def test_bad_input_exits_2_naming_the_problem(tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    runner = CliRunner()
    cases = [
        (["create", "--name", "a", "--scope", "reed", "--state", state], "scopes reed"),
        (["create", "--name", "a", "--scope", "", "--state", state], "(none)"),
        (["create", "--name", "../x", "--scope", "read", "--state", state], "key name '../x'"),
        (["create", "--name", "a", "--scope", "read", "--state", "mysql://x"], "--state"),
        (["revoke", "nobody", "--state", state], "no active key named 'nobody'"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["keys", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output, (args, result.output)
    assert runner.invoke(app, ["keys", "create", "--name", "a", "--scope", "read", "--state", state]).exit_code == 0
    duplicate = runner.invoke(app, ["keys", "create", "--name", "a", "--scope", "admin", "--state", state])
    assert duplicate.exit_code == 2 and "a key named 'a' exists" in duplicate.output
