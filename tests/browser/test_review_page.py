"""The review page (/ui) in a real headless browser (Debian's chromium and chromium-driver, driven by Selenium)
against a real `recsys serve` on the session's model (the synthetic retailer's), closed as deployed (API keys): the
reviewer enters a key with the read and profiles scopes, the admin token for stock changes and feedback. One test
runs against a server in development mode (RECSYS_AUTH=open).

Run with `make test-browser` (installs the browser when missing) or `pytest -m browser`. Set
RECSYS_UI_SCREENSHOT=PATH to save a screenshot of the main view (docs/images/review-page.png is one)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import numpy as np
import pytest
from selenium import webdriver  # the dev extra: a missing client fails CI rather than skipping the tests
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from recsys import SubstituteEngine
from recsys.state.keys import create_key
from recsys.state.store import open_state
from serving.process import serving

pytestmark = pytest.mark.browser
TOKEN = "browser-test-token"
#: the test's own reference queries (httpx), with the operator's token
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
CHROMIUM = Path(os.environ.get("RECSYS_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("RECSYS_CHROMEDRIVER", "/usr/bin/chromedriver"))
# without the background-networking switches Chromium keeps trying to reach Google's services
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")
WAIT_S = 20
K = 5


@dataclass(frozen=True)
class Scene:
    """A real query to look at: a popular item, the customer who bought it most, their home store, and two
    other stores (one per test that changes stock, so the tests do not see each other's changes)."""

    item_id: str
    product_type: str
    customer_id: str
    home_store: str
    other_store: str
    stock_store: str


@pytest.fixture(scope="module")
def scene(model_dir: Path) -> Scene:
    engine = SubstituteEngine.load(model_dir)
    items = engine.model.items
    # the most popular item with a full list online: an item is offered online only with evidence it sells there
    popular = items.sort_values("n_customers", ascending=False, kind="stable")["item_id"].astype(str)
    item_id = next(x for x in popular if len(engine.substitutes(x, k=K)) == K)
    x = engine.index_of(item_id)
    buyers = engine.model.customer_count[:, x].toarray().ravel()
    customer_row = int(np.argmax(buyers))
    customer_id = str(engine.model.customers[customer_row])
    home = engine.customer_profile(customer_id).home_store
    stores = [str(s) for s in engine.model.stores if str(s) != home]
    assert engine.substitutes(item_id, customer_id=customer_id, store_id=home, k=K).personalized
    return Scene(item_id=item_id, product_type=str(items.loc[x, "product_type"]), customer_id=customer_id,
                 home_store=home or stores[-1], other_store=stores[0], stock_store=stores[1])


@pytest.fixture(scope="module")
def state_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser-state") / "state.sqlite3"


@pytest.fixture(scope="module")
def reviewer_key(state_path: Path) -> str:
    """A reviewer's API key: answers, search, the model and profiles (read, profiles), but no stock or feedback."""
    state = open_state(f"sqlite:///{state_path}")
    try:
        return create_key(state, "reviewer", frozenset({"read", "profiles"}))
    finally:
        state.close()


@pytest.fixture(scope="module")
def base_url(model_dir: Path, state_path: Path, reviewer_key: str) -> Iterator[str]:
    with serving(model_dir, env={"RECSYS_ADMIN_TOKEN": TOKEN, "RECSYS_STATE_PATH": str(state_path)}) as (base, _):
        yield base


@pytest.fixture(scope="module")
def open_url(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same service in development mode: reads need no key, stock changes still do. Its catalog is priced in
    euros, its reasons written in German."""
    state = tmp_path_factory.mktemp("browser-open-state") / "state.sqlite3"
    env = {"RECSYS_AUTH": "open", "RECSYS_ADMIN_TOKEN": TOKEN, "RECSYS_STATE_PATH": str(state),
           "RECSYS_CURRENCY": "EUR", "RECSYS_LOCALE": "de"}
    with serving(model_dir, env=env) as (base, _):
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.fail(f"no browser: {CHROMIUM} or {CHROMEDRIVER} is missing (`make test-browser` installs Debian's "
                    "chromium and chromium-driver)")
    profile = tempfile.mkdtemp(prefix="recsys-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# -- helpers ------------------------------------------------------------------------------------------------
def counter(driver: WebDriver, name: str) -> int:
    """How many answers, searches or profiles the page has rendered (it counts them in data-* on <body>)."""
    return int(driver.execute_script(f"return Number(document.body.dataset.{name} || 0)"))


def wait_for(driver: WebDriver, name: str, after: int) -> None:
    WebDriverWait(driver, WAIT_S).until(lambda d: counter(d, name) > after)


def open_page(driver: WebDriver, url: str, key: str | None) -> None:
    """Load a view in a fresh tab with ``key`` typed into the key field (None: no key), as a reviewer does before
    reloading; wait until its answer (if it names an item) is on the page."""
    driver.get(url)
    driver.execute_script("sessionStorage.clear()")
    if key is not None:
        fill(driver, "token", key)  # the page keeps it for the tab (sessionStorage)
    driver.get(url)
    if "item=" in url:
        wait_for(driver, "answers", 0)


def card_ids(driver: WebDriver) -> list[str]:
    return [card.get_attribute("data-item-id") for card in driver.find_elements(By.CSS_SELECTOR, "#substitutes .card")]


def card_reasons(driver: WebDriver) -> list[list[str]]:
    return [[li.text for li in card.find_elements(By.CSS_SELECTOR, ".reasons li")]
            for card in driver.find_elements(By.CSS_SELECTOR, "#substitutes .card")]


def api_answer(base_url: str, item_id: str, **query: object) -> dict:
    body = {"item_id": item_id, "k": K, **{key: value for key, value in query.items() if value is not None}}
    response = httpx.post(f"{base_url}/v1/substitutes", json=body, headers=ADMIN)
    response.raise_for_status()
    return response.json()


def ids(answer: dict) -> list[str]:
    return [s["item_id"] for s in answer["substitutes"]]


def fill(driver: WebDriver, element_id: str, value: str) -> None:
    """Type into a field as a person does (select all, delete, type), so the page sees its input events."""
    field = driver.find_element(By.ID, element_id)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.BACKSPACE)
    if value:
        field.send_keys(value)


def apply_controls(driver: WebDriver) -> None:
    before = counter(driver, "answers")
    driver.find_element(By.ID, "apply").click()
    wait_for(driver, "answers", before)


def view_url(base_url: str, **state: object) -> str:
    return f"{base_url}/ui?{urlencode({k: v for k, v in state.items() if v is not None})}"


# -- the tests ----------------------------------------------------------------------------------------------
def test_search_an_item_open_it_and_see_the_apis_substitutes(browser: WebDriver, base_url: str, scene: Scene,
                                                             reviewer_key: str) -> None:
    open_page(browser, f"{base_url}/ui", reviewer_key)
    fill(browser, "q", scene.product_type[1:-1].lower())  # part of its product type, in another case
    before = counter(browser, "searches")
    browser.find_element(By.ID, "search-button").click()
    wait_for(browser, "searches", before)
    rows = browser.find_elements(By.CSS_SELECTOR, "#search-rows tr")
    assert rows and rows[0].get_attribute("data-item-id") == scene.item_id  # the most popular match first
    assert "q=" in browser.current_url and reviewer_key not in browser.current_url

    before = counter(browser, "answers")
    rows[0].find_element(By.CSS_SELECTOR, "button.open").click()
    wait_for(browser, "answers", before)
    expected = api_answer(base_url, scene.item_id)
    assert browser.find_element(By.ID, "item-card").get_attribute("data-item-id") == scene.item_id
    assert card_ids(browser) == ids(expected) and len(ids(expected)) == K
    assert parse_qs(urlparse(browser.current_url).query)["item"] == [scene.item_id]
    # the item's card: brand, price and its other pack sizes, as the answer has them
    item_card = browser.find_element(By.ID, "item-card").text
    assert expected["item"]["brand"] in item_card and f"${expected['item']['price']:.2f}" in item_card
    for variant in expected["variants"]:
        (row,) = browser.find_elements(By.CSS_SELECTOR, f'#item-card li[data-item-id="{variant["item_id"]}"]')
        shown = row.find_element(By.CSS_SELECTOR, ".availability")
        assert shown.get_attribute("data-availability") == variant["availability"]
        assert variant["availability"] == "in_stock" or "in stock" not in row.text, "no report, no 'in stock'"
    # each card: brand, price, unit price, reasons, score and availability of its substitute
    for card, substitute in zip(browser.find_elements(By.CSS_SELECTOR, "#substitutes .card"),
                                expected["substitutes"], strict=True):
        text = card.text
        assert substitute["brand"] in text and f"${substitute['price']:.2f}" in text
        assert f"{substitute['score']:.2f}" in text
        assert [li.text for li in card.find_elements(By.CSS_SELECTOR, ".reasons li")] == substitute["reasons"]
        shown = card.find_element(By.CSS_SELECTOR, ".availability")
        assert shown.get_attribute("data-availability") == substitute["availability"] != "in_stock"
        assert "in stock" not in shown.text, "nobody reported stock online: the page must not claim it"
        # the catalog's attributes, each with its values
        attributes = card.find_element(By.CSS_SELECTOR, ".attributes").text
        assert substitute["attributes"] and all(f"{name}: {', '.join(values)}" in attributes
                                                for name, values in substitute["attributes"].items())


def test_customer_and_store_change_the_answer_and_the_url_holds_the_view(browser: WebDriver, base_url: str,
                                                                         scene: Scene, reviewer_key: str) -> None:
    open_page(browser, view_url(base_url, item=scene.item_id), reviewer_key)
    anonymous = api_answer(base_url, scene.item_id)
    assert browser.find_element(By.ID, "personalized").get_attribute("data-value") == "false"
    assert card_reasons(browser) == [s["reasons"] for s in anonymous["substitutes"]]

    fill(browser, "customer", scene.customer_id)
    fill(browser, "store", scene.home_store)
    apply_controls(browser)
    personal = api_answer(base_url, scene.item_id, customer_id=scene.customer_id, store_id=scene.home_store)
    assert personal["personalized"] is True
    assert browser.find_element(By.ID, "personalized").get_attribute("data-value") == "true"
    assert card_ids(browser) == ids(personal)
    reasons = card_reasons(browser)
    assert reasons == [s["reasons"] for s in personal["substitutes"]]
    assert reasons != [s["reasons"] for s in anonymous["substitutes"]]
    assert any(r == "your usual brand" or r.startswith("you bought it before") for rs in reasons for r in rs)
    assert browser.find_element(By.ID, "answer-store").text == f"store {scene.home_store}"
    state = parse_qs(urlparse(browser.current_url).query)
    assert state["customer"] == [scene.customer_id] and state["store"] == [scene.home_store]

    if os.environ.get("RECSYS_UI_SCREENSHOT"):
        save_screenshot(browser, Path(os.environ["RECSYS_UI_SCREENSHOT"]))

    # the customer's profile, one click away
    before = counter(browser, "profiles")
    browser.find_element(By.ID, "profile-link").click()
    wait_for(browser, "profiles", before)
    profile = httpx.get(f"{base_url}/v1/customers/{scene.customer_id}/profile", headers=ADMIN).json()
    panel = browser.find_element(By.ID, "profile").text
    assert f"Customer {scene.customer_id}" in panel and profile["categories"][0]["category"] in panel

    # the URL is the view (without the key): opened afresh, it shows the same answer
    shared = browser.current_url
    assert reviewer_key not in shared
    open_page(browser, shared, reviewer_key)
    assert card_ids(browser) == ids(personal)
    assert browser.find_element(By.ID, "customer").get_attribute("value") == scene.customer_id

    # another store: the answer for that store (its own stock and demand), still personal
    fill(browser, "store", scene.other_store)
    apply_controls(browser)
    elsewhere = api_answer(base_url, scene.item_id, customer_id=scene.customer_id, store_id=scene.other_store)
    assert card_ids(browser) == ids(elsewhere)
    assert card_reasons(browser) == [s["reasons"] for s in elsewhere["substitutes"]]
    assert browser.find_element(By.ID, "answer-store").text == f"store {scene.other_store}"


def test_filters_narrow_the_answer_as_the_api_does(browser: WebDriver, base_url: str, scene: Scene,
                                                   reviewer_key: str) -> None:
    open_page(browser, view_url(base_url, item=scene.item_id, customer=scene.customer_id), reviewer_key)
    unfiltered = api_answer(base_url, scene.item_id, customer_id=scene.customer_id)
    prices = sorted(s["price"] for s in unfiltered["substitutes"] if s["price"] is not None)
    cap = f"{prices[len(prices) // 2]:.2f}"  # keeps about half of them
    fill(browser, "max-price", cap)
    fill(browser, "k", "3")
    apply_controls(browser)
    filtered = api_answer(base_url, scene.item_id, customer_id=scene.customer_id, k=3,
                          filters={"max_price": float(cap)})
    assert card_ids(browser) == ids(filtered) and 1 <= len(ids(filtered)) <= 3
    assert all(s["price"] <= float(cap) for s in filtered["substitutes"])
    state = parse_qs(urlparse(browser.current_url).query)
    assert state["max_price"] == [cap] and state["k"] == ["3"]


def test_the_intent_changes_the_answer_as_the_api_does_and_stays_in_the_url(browser: WebDriver, base_url: str,
                                                                            scene: Scene, reviewer_key: str) -> None:
    open_page(browser, view_url(base_url, item=scene.item_id, customer=scene.customer_id), reviewer_key)
    assert browser.find_element(By.ID, "answer-intent").text == "intent balanced"
    assert "intent" not in parse_qs(urlparse(browser.current_url).query), "the default stays out of the URL"
    Select(browser.find_element(By.ID, "intent")).select_by_value("discover")
    apply_controls(browser)
    discover = api_answer(base_url, scene.item_id, customer_id=scene.customer_id, intent="discover")
    assert card_ids(browser) == ids(discover) and all(s["bought_before"] == 0 for s in discover["substitutes"])
    assert browser.find_element(By.ID, "answer-intent").text == "intent discover"
    assert parse_qs(urlparse(browser.current_url).query)["intent"] == ["discover"]
    # a shared link opens the same view
    open_page(browser, view_url(base_url, item=scene.item_id, customer=scene.customer_id, intent="familiar"),
              reviewer_key)
    assert Select(browser.find_element(By.ID, "intent")).first_selected_option.get_attribute("value") == "familiar"
    familiar = api_answer(base_url, scene.item_id, customer_id=scene.customer_id, intent="familiar")
    assert card_ids(browser) == ids(familiar) and familiar["intent"] == "familiar"


def test_out_of_stock_with_the_token_removes_the_substitute(browser: WebDriver, base_url: str, scene: Scene,
                                                            state_path: Path, reviewer_key: str) -> None:
    query = {"customer_id": scene.customer_id, "store_id": scene.stock_store}
    open_page(browser, view_url(base_url, item=scene.item_id, customer=scene.customer_id, store=scene.stock_store),
              reviewer_key)
    before_answer = api_answer(base_url, scene.item_id, **query)
    first = ids(before_answer)[0]
    assert card_ids(browser) == ids(before_answer)

    fill(browser, "token", TOKEN)
    button = browser.find_element(By.CSS_SELECTOR, f'#substitutes .card[data-item-id="{first}"] .out-of-stock')
    assert button.is_enabled()
    before = counter(browser, "answers")
    button.click()
    wait_for(browser, "answers", before)
    WebDriverWait(browser, WAIT_S).until(lambda d: "marked out of stock" in d.find_element(By.ID, "status").text)
    after_answer = api_answer(base_url, scene.item_id, **query)
    assert first not in ids(after_answer) and first not in card_ids(browser)
    assert card_ids(browser) == ids(after_answer)
    assert first in ids(api_answer(base_url, scene.item_id, customer_id=scene.customer_id))  # only at that store

    # feedback on what is shown: recorded for the answer on the page (its signed id), its id in the status line
    accepted = card_ids(browser)[0]
    browser.find_element(By.CSS_SELECTOR, "#substitutes .card .accept").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: "Feedback #" in d.find_element(By.ID, "status").text)
    state = open_state(f"sqlite:///{state_path}")
    try:
        recorded = state.feedback.feedback()[-1]
    finally:
        state.close()
    assert (recorded.item_id, recorded.accepted, recorded.customer_id, recorded.store_id, recorded.source) == (
        scene.item_id, accepted, scene.customer_id, scene.stock_store, "picker")
    assert list(recorded.shown) == card_ids(browser) and recorded.answer_id

    # and back in stock from the page: the answer is what it was
    before = counter(browser, "answers")
    browser.find_element(By.CSS_SELECTOR, f'#stock-change-list li[data-item-id="{first}"] .restock').click()
    wait_for(browser, "answers", before)
    assert card_ids(browser) == ids(before_answer) == ids(api_answer(base_url, scene.item_id, **query))


def _put_without_a_key(driver: WebDriver, item_id: str, store_id: str) -> object:
    """The page's own stock call without a key, from inside the page: the status the server answers."""
    return driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch("/v1/inventory", {method: "PUT", headers: {"content-type": "application/json"},
              body: JSON.stringify({updates: [{item_id: arguments[0], store_id: arguments[1], in_stock: false}]})})
          .then((r) => done(r.status), (e) => done(String(e)));""", item_id, store_id)


def test_in_development_mode_the_page_reads_without_a_key_but_changes_nothing(browser: WebDriver, open_url: str,
                                                                             scene: Scene) -> None:
    query = {"customer_id": scene.customer_id, "store_id": scene.other_store}
    open_page(browser, view_url(open_url, item=scene.item_id, customer=scene.customer_id, store=scene.other_store),
              None)
    answer = api_answer(open_url, scene.item_id, **query)
    assert card_ids(browser) == ids(answer)
    shown = browser.find_element(By.ID, "answer").text
    assert "€" in shown and "$" not in shown, "prices in the service's currency (RECSYS_CURRENCY), never a $"
    assert card_reasons(browser) == [s["reasons"] for s in answer["substitutes"]], "the service's German texts"
    buttons = browser.find_elements(By.CSS_SELECTOR, ".admin-action")
    assert buttons and not any(button.is_enabled() for button in buttons)
    assert browser.execute_script("return sessionStorage.length") == 0
    assert _put_without_a_key(browser, ids(answer)[0], scene.other_store) == 401
    assert ids(api_answer(open_url, scene.item_id, **query)) == ids(answer)


def test_without_the_token_the_page_cannot_change_anything(browser: WebDriver, base_url: str, scene: Scene,
                                                           reviewer_key: str) -> None:
    query = {"customer_id": scene.customer_id, "store_id": scene.other_store}
    view = view_url(base_url, item=scene.item_id, customer=scene.customer_id, store=scene.other_store)
    unchanged = api_answer(base_url, scene.item_id, **query)

    # no key at all: nothing is shown, and the page says what it needs
    open_page(browser, view, None)
    assert browser.find_element(By.ID, "answer").is_displayed() is False
    status = browser.find_element(By.ID, "status").text
    assert "401" in status and "needs an API key with the read scope" in status, status
    assert browser.execute_script("return sessionStorage.length") == 0
    assert _put_without_a_key(browser, ids(unchanged)[0], scene.other_store) == 401

    # the reviewer's key (no write scope): the answer is shown, the buttons work, the server refuses the change
    fill(browser, "token", reviewer_key)
    apply_controls(browser)
    assert card_ids(browser) == ids(unchanged) and reviewer_key not in browser.current_url
    before = counter(browser, "answers")
    browser.find_element(By.CSS_SELECTOR, "#substitutes .card .out-of-stock").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: "refused" in d.find_element(By.ID, "status").text)
    status = browser.find_element(By.ID, "status").text
    assert "403" in status and "write scope" in status, status
    browser.find_element(By.CSS_SELECTOR, "#substitutes .card .reject").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: "Feedback refused" in d.find_element(By.ID, "status").text)
    assert "403" in browser.find_element(By.ID, "status").text
    assert counter(browser, "answers") == before and card_ids(browser) == ids(unchanged)

    # a wrong token: the buttons work, the server refuses, the page says so and nothing changes
    fill(browser, "token", "not-the-token")
    before = counter(browser, "answers")
    browser.find_element(By.CSS_SELECTOR, "#substitutes .card .out-of-stock").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: "Stock change refused: 401" in d.find_element(By.ID, "status").text)
    assert "not accepted" in browser.find_element(By.ID, "status").text
    assert counter(browser, "answers") == before and card_ids(browser) == ids(unchanged)
    assert ids(api_answer(base_url, scene.item_id, **query)) == ids(unchanged)
    fill(browser, "token", "")
    assert browser.execute_script("return sessionStorage.length") == 0


def test_model_page_shows_version_report_and_held_out_metrics(browser: WebDriver, base_url: str,
                                                              reviewer_key: str) -> None:
    open_page(browser, f"{base_url}/ui", None)  # no key in this tab: the model page says where to enter one
    browser.get(f"{base_url}/ui/model")
    WebDriverWait(browser, WAIT_S).until(lambda d: d.execute_script("return document.body.dataset.loaded") == "1")
    assert "needs an API key with the read scope" in browser.find_element(By.ID, "status").text

    open_page(browser, f"{base_url}/ui", reviewer_key)  # entered on the review page: the tab keeps it
    browser.get(f"{base_url}/ui/model")
    WebDriverWait(browser, WAIT_S).until(lambda d: d.execute_script("return document.body.dataset.loaded") == "1")
    model = httpx.get(f"{base_url}/v1/model", headers=ADMIN).json()
    assert browser.find_element(By.ID, "summary-version").text == model["model_version"]
    assert browser.find_element(By.ID, "model-version").text == model["model_version"]
    report = browser.find_element(By.ID, "report")
    assert report.find_elements(By.TAG_NAME, "table"), "the report's tables are rendered"
    images = report.find_elements(By.TAG_NAME, "img")
    assert images and all(browser.execute_script("return arguments[0].naturalWidth", img) > 0 for img in images)
    if model["heldout"] is not None:
        rows = browser.find_elements(By.CSS_SELECTOR, "#heldout table.metrics tbody tr")
        assert {row.find_element(By.TAG_NAME, "th").text for row in rows} == set(model["heldout"]["methods"])


def save_screenshot(driver: WebDriver, path: Path) -> None:
    """The whole main view at a desktop width, beyond the window's height (Chromium's DevTools capture)."""
    width, height = driver.execute_script(
        "return [window.innerWidth, document.documentElement.scrollHeight]")  # laid out without a scroll bar
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def test_an_admin_adds_a_rule_sees_the_answer_change_and_removes_it(browser: WebDriver, base_url: str, scene: Scene,
                                                                   reviewer_key: str) -> None:
    """The rules panel: the example rule (block the first substitute's brand in X's category) added with the
    token changes the answer on the page as it does through the API; removing it brings the answer back."""
    open_page(browser, view_url(base_url, item=scene.item_id), reviewer_key)
    before = api_answer(base_url, scene.item_id)
    brand = before["substitutes"][0]["brand"]
    fill(browser, "token", TOKEN)
    rule = json.loads(browser.find_element(By.ID, "rule-body").get_attribute("value"))
    assert rule["action"] == "block" and rule["target"] == {"brand": brand}
    try:
        changes = counter(browser, "rules")
        browser.find_element(By.ID, "rule-add").click()
        wait_for(browser, "rules", changes)
        blocked = api_answer(base_url, scene.item_id)
        assert brand not in {s["brand"] for s in blocked["substitutes"]} and blocked["rules_applied"] == [rule["name"]]
        WebDriverWait(browser, WAIT_S).until(lambda d: card_ids(d) == ids(blocked))
        assert rule["name"] in browser.find_element(By.ID, "answer-rules").text
        assert browser.find_elements(By.CSS_SELECTOR, f'#rule-list li[data-rule="{rule["name"]}"]')
        changes = counter(browser, "rules")
        browser.find_element(By.CSS_SELECTOR, f'#rule-list li[data-rule="{rule["name"]}"] .rule-remove').click()
        wait_for(browser, "rules", changes)
        WebDriverWait(browser, WAIT_S).until(lambda d: card_ids(d) == ids(before))
        assert not browser.find_element(By.ID, "answer-rules").is_displayed()
    finally:  # the server is shared by the module's tests: never leave the rule behind
        httpx.delete(f"{base_url}/v1/admin/rules/{rule['name']}", headers=ADMIN)
