"""CORS in a real browser: a page served from another local port calls a real `recsys serve` started with
RECSYS_CORS_ORIGINS naming that page's origin. The page from the allowed origin reads the answer (and the exposed
X-Request-ID and Server-Timing headers); the same page from an origin not named is refused by the browser (fetch
rejects with a TypeError), although the server would answer.

Run with `make test-browser` or `pytest -m browser` (headless Debian chromium and chromedriver, as in
test_review_page.py)."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import pytest
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from recsys import SubstituteEngine
from serving.process import serving
from tests.browser.test_review_page import WAIT_S, browser  # noqa: F401 (the headless browser fixture)

pytestmark = pytest.mark.browser

#: the page: POSTs a substitute request to the API named in its query string and writes what came back into
#: data-outcome on <body> (JSON), for the test to read
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>CORS check</title></head>
<body><pre id="out">calling...</pre>
<script>
const query = new URLSearchParams(window.location.search);
function done(outcome) {
  document.getElementById("out").textContent = JSON.stringify(outcome);
  document.body.dataset.outcome = JSON.stringify(outcome);
}
fetch(query.get("api") + "/v1/substitutes", {
  method: "POST",
  headers: {"content-type": "application/json", "x-request-id": "cors-check-1"},
  body: JSON.stringify({item_id: query.get("item"), k: 3}),
}).then(async (response) => {
  const body = await response.json();
  done({status: response.status, substitutes: (body.substitutes || []).length,
        request_id: response.headers.get("x-request-id"), timing: response.headers.get("server-timing")});
}).catch((error) => done({error: error.name, message: String(error.message)}));
</script></body></html>
"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass


@pytest.fixture(scope="module")
def page_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cors-page")
    (directory / "index.html").write_text(PAGE)
    return directory


def _static_site(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on a free loopback port, in a thread; yield its origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def allowed_site(page_dir: Path) -> Iterator[str]:
    yield from _static_site(page_dir)


@pytest.fixture(scope="module")
def other_site(page_dir: Path) -> Iterator[str]:
    yield from _static_site(page_dir)


@pytest.fixture(scope="module")
def api(model_dir: Path, allowed_site: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("cors-state") / "state.sqlite3"
    # auth open: this is about CORS, not keys (a preflight never needs a key; the request itself would)
    env = {"RECSYS_CORS_ORIGINS": allowed_site, "RECSYS_AUTH": "open", "RECSYS_STATE_PATH": str(state),
           "RECSYS_ADMIN_TOKEN": "cors-browser-token"}
    with serving(model_dir, env=env) as (base, _):
        yield base


@pytest.fixture(scope="module")
def item_id(model_dir: Path) -> str:
    items = SubstituteEngine.load(model_dir).model.items
    return str(items.sort_values("n_customers", ascending=False, kind="stable")["item_id"].iloc[0])


def _outcome(driver: WebDriver, site: str, api: str, item_id: str) -> dict[str, object]:
    driver.get(f"{site}/index.html?{urlencode({'api': api, 'item': item_id})}")
    text = WebDriverWait(driver, WAIT_S).until(lambda d: d.execute_script("return document.body.dataset.outcome"))
    outcome: dict[str, object] = json.loads(text)
    return outcome


def test_the_allowed_origin_reads_the_answer(browser: WebDriver, allowed_site: str, api: str,  # noqa: F811
                                             item_id: str) -> None:
    outcome = _outcome(browser, allowed_site, api, item_id)
    assert outcome["status"] == 200 and outcome["substitutes"] == 3, outcome
    # the request id the page sent came back, and both exposed headers are readable by the page's script
    assert outcome["request_id"] == "cors-check-1"
    assert "app;dur=" in str(outcome["timing"])


def test_another_origin_is_refused_by_the_browser(browser: WebDriver, other_site: str, api: str,  # noqa: F811
                                                  item_id: str) -> None:
    assert other_site != api
    outcome = _outcome(browser, other_site, api, item_id)
    assert outcome.get("error") == "TypeError", outcome  # what fetch rejects with when CORS refuses


def test_localhost_is_not_127_0_0_1(browser: WebDriver, allowed_site: str, api: str,  # noqa: F811
                                    item_id: str) -> None:
    """The same page on the same port, by the other name: another origin."""
    outcome = _outcome(browser, allowed_site.replace("127.0.0.1", "localhost"), api, item_id)
    assert outcome.get("error") == "TypeError", outcome
