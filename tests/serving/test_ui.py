"""The review page's server side: the catalog search, the model summary and report files, and the /ui pages
(served from the package, offline, switched off by RECSYS_UI=false). The page itself runs in a real browser in
tests/browser/."""

import re
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recsys import SubstituteEngine
from recsys.model.registry import HEADLINE_METRICS
from recsys.query.search import MAX_SEARCH_LIMIT
from serving.app import create_app
from serving.routers.ui import ASSETS, PAGES
from serving.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
UI_DIR = ROOT / "serving" / "ui"
TOKEN = "ui-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def client(model_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    """The service, closed (API keys), called with the operator's token: these tests are about what it answers."""
    settings = Settings(model_path=model_dir, admin_token=TOKEN, state_path=tmp_path / "state.sqlite3")
    with TestClient(create_app(settings), headers=AUTH) as test_client:
        yield test_client


@pytest.fixture()
def items(model_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(model_dir / "items.parquet")


def _matches(items: pd.DataFrame, text: str) -> pd.DataFrame:
    """What the search should find, computed independently with pandas."""
    needle = text.casefold()
    hit = pd.Series(False, index=items.index)
    for column in ("product_type", "category", "brand"):
        hit |= items[column].astype(str).str.casefold().str.contains(needle, regex=False)
    return items[hit]


def test_search_finds_type_category_and_brand_substrings_in_any_case(client: TestClient, items: pd.DataFrame
                                                                      ) -> None:
    top = items.sort_values("n_customers", ascending=False).iloc[0]
    for text in (str(top["product_type"])[2:9].lower(), str(top["category"]).title(), str(top["brand"]).upper()):
        page = client.get("/v1/items", params={"q": text, "limit": MAX_SEARCH_LIMIT}).json()
        expected = _matches(items, text.strip())
        assert page["total"] == len(expected) > 0, text
        assert len(page["items"]) == min(MAX_SEARCH_LIMIT, len(expected))
        found = items.set_index("item_id").loc[[i["item_id"] for i in page["items"]]]
        assert set(found.index) <= set(expected["item_id"])
        # most popular first: the page is the top of the matches by customers
        assert found["n_customers"].is_monotonic_decreasing
        assert found["n_customers"].iloc[0] == expected["n_customers"].max()
        first = page["items"][0]
        assert set(first) >= {"item_id", "brand", "product_type", "category", "package_size", "price", "unit_price"}


def test_search_by_id_puts_that_item_first(client: TestClient, items: pd.DataFrame) -> None:
    item = items.sort_values("n_customers").iloc[len(items) // 2]  # not a popular one
    page = client.get("/v1/items", params={"q": f"  {item['item_id']} "}).json()
    assert page["query"] == item["item_id"]
    assert page["items"][0]["item_id"] == item["item_id"]
    assert page["items"][0]["product_type"] == item["product_type"]
    assert [i["item_id"] for i in page["items"]].count(item["item_id"]) == 1


def test_search_pages_are_stable_and_cover_the_matches(client: TestClient) -> None:
    whole = client.get("/v1/items", params={"q": "cheese", "limit": 30}).json()
    pages = [client.get("/v1/items", params={"q": "cheese", "offset": offset, "limit": 10}).json()
             for offset in (0, 10, 20)]
    assert [i["item_id"] for p in pages for i in p["items"]] == [i["item_id"] for i in whole["items"]]
    assert all(p["total"] == whole["total"] for p in pages) and whole["total"] > 30
    past_the_end = client.get("/v1/items", params={"q": "cheese", "offset": whole["total"]}).json()
    assert past_the_end["items"] == [] and past_the_end["total"] == whole["total"]
    assert client.get("/v1/items", params={"q": "no such thing anywhere"}).json()["total"] == 0


@pytest.mark.parametrize(("params", "status"), [
    ({}, 422), ({"q": ""}, 422), ({"q": "   "}, 422), ({"q": "x" * 201}, 422), ({"q": "\x1c"}, 400),
    ({"q": "milk", "limit": 0}, 422), ({"q": "milk", "limit": MAX_SEARCH_LIMIT + 1}, 422),
    ({"q": "milk", "offset": -1}, 422), ({"q": "milk", "limit": "ten"}, 422), ({"q": "milk", "offset": 1.5}, 422),
])
def test_search_refuses_bad_input_with_a_4xx_and_a_message(client: TestClient, params: dict[str, object],
                                                           status: int) -> None:
    response = client.get("/v1/items", params=params)
    assert response.status_code == status
    assert response.json()["detail"]


def test_engine_search_refuses_bad_input(engine: SubstituteEngine) -> None:
    for query, offset, limit in (("", 0, 10), (" \t", 0, 10), ("milk", -1, 10), ("milk", 0, 0),
                                 ("milk", 0, MAX_SEARCH_LIMIT + 1), ("milk", True, 10)):
        with pytest.raises(ValueError):
            engine.search_items(query, offset, limit)
    assert engine.search_items("MILK", 0, 3).total == engine.search_items("milk", 0, 3).total > 0


def test_model_summary_and_report_files(client: TestClient, model_dir: Path) -> None:
    summary = client.get("/v1/model").json()
    assert summary["model_version"] == client.get("/readyz").json()["model_version"] == model_dir.name
    assert {"report.md", "report-als-loss.png"} <= set(summary["report_files"])
    assert summary["counts"]["items"] > 0 and summary["data_span"]["start"]
    assert (summary["currency"], summary["locale"]) == ("USD", "en"), "the settings the answers are written in"
    if summary["heldout"] is not None:
        assert set(summary["headline_metrics"]) == set(HEADLINE_METRICS)  # every intent's, HR@1 included
        assert {"ours", "ours-familiar", "ours-discover"} <= set(summary["heldout"]["methods"])
    report = client.get("/v1/model/report/report.md")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/markdown")
    assert report.text == (model_dir / "report.md").read_text()
    plot = client.get("/v1/model/report/report-als-loss.png")
    assert plot.headers["content-type"] == "image/png" and plot.content.startswith(b"\x89PNG")


@pytest.mark.parametrize("name", ["manifest.json", "items.parquet", "..%2Fmanifest.json", "%2E%2E%2F%2E%2E%2Fetc",
                                  "report.md%00", "%2E%2E", "report-als-loss.png%2F..%2F..%2Fmanifest.json"])
def test_report_files_are_the_reports_only(client: TestClient, name: str) -> None:
    response = client.get(f"/v1/model/report/{name}")
    assert response.status_code == 404
    assert b"sha256" not in response.content and b"PAR1" not in response.content


def test_report_files_of_a_model_built_in_memory_are_none(engine: SubstituteEngine) -> None:
    assert SubstituteEngine(engine.model, engine.manifest).report_files() == {}
    assert set(engine.report_files()) >= {"report.md"}


def test_ui_pages_and_assets_are_served_from_the_package(client: TestClient) -> None:
    client = TestClient(client.app)  # without a key: the pages are static, the API calls they make need one
    assert client.get("/v1/items", params={"q": "milk"}).status_code == 401
    for path in ("/ui", "/ui/model"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        # every script and stylesheet the page names is one of ours, and is served
        for asset in re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', page.text):
            assert client.get(asset).status_code == 200, asset
    assert client.get("/ui/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/static/style.css").headers["content-type"].startswith("text/css")
    assert client.get("/ui/static/../settings.py").status_code == 404
    assert client.get("/ui/static/nope.js").status_code == 404
    assert "/ui" not in client.get("/openapi.json").json()["paths"]


def test_ui_files_work_offline_and_call_the_public_api_only() -> None:
    shipped = sorted(UI_DIR.iterdir())
    assert {p.name for p in shipped} == set(PAGES.values()) | set(ASSETS)
    for path in shipped:
        text = path.read_text()
        assert not re.search(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}/", text), f"{path.name} names another host"
        assert "@import" not in text and "<script>" not in text  # nothing inline or pulled in from elsewhere
    script = "".join((UI_DIR / name).read_text() for name in ASSETS if name.endswith(".js"))
    called = set(re.findall(r'api\(\s*[`"](/[^`"?$]*)', script))
    assert called and all(path.startswith(("/v1/", "/readyz")) for path in called), called


def test_ui_files_ship_in_the_package() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for path in UI_DIR.iterdir():
        assert any(fnmatch(f"ui/{path.name}", pattern) for pattern in package_data["serving"]), path.name


def test_ui_can_be_switched_off(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_UI", "false")
    settings = Settings(model_path=model_dir, admin_token=TOKEN, state_path=tmp_path / "state.sqlite3")
    assert settings.ui is False and Settings.model_fields["ui"].default is True
    with TestClient(create_app(settings), headers=AUTH) as client:
        assert client.get("/ui").status_code == 404
        assert client.get("/ui/static/app.js").status_code == 404
        assert client.get("/v1/items", params={"q": "milk"}).status_code == 200  # the API stays
