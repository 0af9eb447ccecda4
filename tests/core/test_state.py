"""The state store behind the inventory, feedback and model pointer: sequence numbers, catch-up between
processes sharing one SQLite file, schema migration, URLs, and a database that is down."""

import sqlite3
import time
from pathlib import Path

import pytest

from recsys import Inventory, StockUpdate
from recsys.state.answers import SECRET_NAME, AnswerSigner
from recsys.state.feedback import Feedback
from recsys.state.storage import SCHEMA_VERSION, StateUnavailableError
from recsys.state.store import SqliteState, check_url, open_state, read_decisions, redact, sqlite_path


def test_writes_of_one_process_reach_another_by_sequence(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    writer, reader = open_state(url), open_state(url)  # two processes' views of one file
    mine, theirs = Inventory(writer.stock), Inventory(reader.stock)
    assert theirs.synced and theirs.seq == -1  # nothing read yet
    mine.apply([StockUpdate("a", False, "s1"), StockUpdate("b", True, "s1")])
    mine.apply([StockUpdate("a", True, "s1", None), StockUpdate("c", False, "s2")])
    assert theirs.out_of_stock("s1")[1] == []
    assert theirs.catch_up() == 3  # a (its latest state), b, c
    assert theirs.out_of_stock("s1")[1] == [] and theirs.out_of_stock("s2")[1] == ["c"]
    assert theirs.in_stock_at("a") == ("s1",) and theirs.seq == 2
    assert theirs.catch_up() == 0
    version = mine.version("s1")
    assert mine.catch_up() == 0 and mine.version("s1") == version, "its own writes read back change no mask"
    writer.close()
    reader.close()


def test_a_version_one_file_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE stock (store_id BLOB NOT NULL, item_id BLOB NOT NULL, in_stock INTEGER NOT NULL, "
                "restock_eta TEXT, updated_at TEXT DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (store_id, item_id))")
    old.execute("INSERT INTO stock (store_id, item_id, in_stock) VALUES (?, ?, 0)", (b"s1", b"x"))
    old.commit()
    old.close()
    state = SqliteState(path)
    inventory = Inventory(state.stock)
    assert inventory.out_of_stock("s1")[1] == ["x"]
    inventory.apply([StockUpdate("y", False, "s1")])
    assert Inventory(open_state(str(path)).stock).out_of_stock("s1")[1] == ["x", "y"]
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    state.close()


def test_model_pointer_and_feedback_in_the_state(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    state = open_state(url)
    assert state.model_pointer() is None
    state.set_model_pointer("v1")
    state.set_model_pointer("v2")
    assert open_state(url).model_pointer() == "v2"
    signer = AnswerSigner(state.shared_secret(SECRET_NAME))
    answer_id = signer.sign("v2", "x", "7", None, ["y", "z"], time.time())
    decided = Feedback("x", shown=("y", "z"), rejected=("y",), customer_id="7", model_version="v2",
                       answer_id=answer_id)
    recorded = state.feedback.record(decided)
    assert recorded.created and recorded.id > 0 and recorded.feedback == decided
    again = state.feedback.record(Feedback("x", shown=("y", "z"), accepted="z", customer_id="7", model_version="v2",
                                           answer_id=answer_id))
    assert (again.id, again.created, again.feedback) == (recorded.id, False, decided), "one decision per answer"
    assert state.feedback.record(Feedback("x", rejected=("z",), customer_id="8")).created, "unsigned: kept"
    state.close()
    decisions = read_decisions(url)
    assert decisions[["item_id", "substitute_id", "customer_id", "accepted"]].values.tolist() == [
        ["x", "y", "7", False]], "only the signed answer's decision is learned from"


class _DownStore:
    """A shared database that cannot be reached."""

    def save_stock(self, updates: list[StockUpdate]) -> int:
        raise StateUnavailableError("down")

    def stock_since(self, seq: int) -> tuple[list[StockUpdate], int]:
        raise StateUnavailableError("down")


def test_a_store_that_is_down_applies_nothing() -> None:
    inventory = Inventory(_DownStore())
    assert not inventory.synced
    with pytest.raises(StateUnavailableError):
        inventory.apply([StockUpdate("a", False, "s1")])
    assert inventory.out_of_stock("s1") == (0, []) and inventory.version("s1") == 0


def test_state_urls() -> None:
    assert sqlite_path("sqlite:///state/x.sqlite3") == Path("state/x.sqlite3")
    assert sqlite_path("sqlite:////abs/x.sqlite3") == Path("/abs/x.sqlite3")
    assert sqlite_path("state/x.sqlite3") == Path("state/x.sqlite3")
    assert sqlite_path("postgresql://u@h/db") is None
    check_url("postgresql://u:secret@db.example:5432/recsys")
    for bad in ("mysql://u@h/db", "sqlite:///", "postgresql:///db", "http://h/x"):
        with pytest.raises(ValueError):
            check_url(bad)
    assert redact("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
    with pytest.raises(ValueError, match="no state database"):
        open_state("sqlite:///nowhere/x.sqlite3", must_exist=True)
