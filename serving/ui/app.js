// The review page: an item, the substitutes a customer would get at a store, and why. It calls the public HTTP
// API only (search, substitutes, profile, inventory, feedback), each call with the API key or admin token entered
// (common.js). The URL's query string holds the view's state, so a view can be shared as a link; the key never goes
// into the URL.
"use strict";

const SEARCH_PAGE = 20;
const PROFILE_CATEGORIES = 8;

// URL parameter -> form field, in the order they appear in the URL
const FIELDS = {
  item: "item", customer: "customer", store: "store", k: "k", intent: "intent",
  brands: "brands", private_label: "private-label", max_price: "max-price", max_size_ratio: "max-size-ratio",
};
// a field at its default stays out of the URL
const DEFAULTS = { k: "5", intent: "balanced" };

const $ = (id) => document.getElementById(id);
let lastAnswer = null;

// ---- state in the URL -----------------------------------------------------------------------------------
function readUrl() {
  return new URLSearchParams(window.location.search);
}

function formState() {
  const state = new URLSearchParams();
  for (const [param, id] of Object.entries(FIELDS)) {
    const value = $(id).value.trim();
    if (value && value !== DEFAULTS[param]) state.set(param, value);
  }
  const current = readUrl();
  for (const keep of ["q", "offset", "profile"]) {
    if (current.has(keep)) state.set(keep, current.get(keep));
  }
  return state;
}

function pushState(state) {
  const query = state.toString();
  const url = `${window.location.pathname}${query ? "?" + query : ""}`;
  if (url !== `${window.location.pathname}${window.location.search}`) window.history.pushState(null, "", url);
}

function fillForm(state) {
  for (const [param, id] of Object.entries(FIELDS)) $(id).value = state.get(param) || DEFAULTS[param] || "";
  $("q").value = state.get("q") || "";
  updateProfileLink();
}

// ---- status line ----------------------------------------------------------------------------------------
function say(message, kind = "info") {
  const status = $("status");
  status.textContent = message;
  status.dataset.kind = kind;
}

function bump(counter) {
  document.body.dataset[counter] = String(Number(document.body.dataset[counter] || 0) + 1);
}

// ---- search ---------------------------------------------------------------------------------------------
async function runSearch() {
  await knowCurrency();
  const state = readUrl();
  const query = (state.get("q") || "").trim();
  if (!query) {
    $("search-results").hidden = true;
    return;
  }
  const offset = Math.max(0, Number.parseInt(state.get("offset") || "0", 10) || 0);
  try {
    const page = await api(`/v1/items?${new URLSearchParams({ q: query, offset, limit: SEARCH_PAGE })}`);
    renderSearch(page);
  } catch (error) {
    $("search-results").hidden = true;
    say(`Search failed: ${error.message}`, "error");
  } finally {
    bump("searches");
  }
}

function renderSearch(page) {
  $("search-total").textContent = page.total === 0 ? "none"
    : `${page.offset + 1}–${page.offset + page.items.length} of ${page.total.toLocaleString()}`;
  $("search-rows").replaceChildren(...page.items.map((item) => el("tr", { dataset: { itemId: item.item_id } },
    el("td", {}, item.item_id),
    el("td", {}, item.brand, item.private_label ? el("span", { class: "tag" }, "store brand") : null),
    el("td", {}, item.product_type),
    el("td", {}, item.category),
    el("td", {}, item.package_size || item.size || "–"),
    el("td", {}, money(item.price)),
    el("td", {}, el("button", { type: "button", class: "open", onclick: () => openItem(item.item_id) }, "open")),
  )));
  $("search-prev").disabled = page.offset === 0;
  $("search-next").disabled = page.offset + page.items.length >= page.total;
  $("search-results").hidden = false;
}

function pageSearch(direction) {
  const state = formState();
  const offset = Math.max(0, Number.parseInt(state.get("offset") || "0", 10) + direction * SEARCH_PAGE);
  if (offset) state.set("offset", offset); else state.delete("offset");
  pushState(state);
  runSearch();
}

function openItem(itemId) {
  $("item").value = itemId;
  const state = formState();
  // the matches have done their job: the view is about the item now (the search box keeps its text)
  state.delete("q");
  state.delete("offset");
  pushState(state);
  $("search-results").hidden = true;
  loadAnswer();
}

// ---- the answer -----------------------------------------------------------------------------------------
function requestBody(state) {
  const body = { item_id: state.get("item"), k: Number.parseInt(state.get("k") || DEFAULTS.k, 10),
    intent: state.get("intent") || DEFAULTS.intent };
  if (state.get("customer")) body.customer_id = state.get("customer");
  if (state.get("store")) body.store_id = state.get("store");
  const filters = {};
  const brands = (state.get("brands") || "").split(",").map((b) => b.trim()).filter(Boolean);
  if (brands.length) filters.brands = brands;
  if (state.get("private_label")) filters.private_label = state.get("private_label") === "true";
  if (state.get("max_price")) filters.max_price = Number(state.get("max_price"));
  if (state.get("max_size_ratio")) filters.max_size_ratio = Number(state.get("max_size_ratio"));
  if (Object.keys(filters).length) body.filters = filters;
  return body;
}

async function loadAnswer() {
  await knowCurrency();
  const state = readUrl();
  if (!state.get("item")) {
    $("answer").hidden = true;
    return;
  }
  try {
    lastAnswer = await api("/v1/substitutes", { method: "POST", body: requestBody(state) });
    renderAnswer(lastAnswer, state);
    say(`${lastAnswer.substitutes.length} substitute(s) for ${lastAnswer.item.item_id} at ${lastAnswer.store_id}`
        + `${state.get("customer") ? ` for customer ${state.get("customer")}` : ""}.`);
  } catch (error) {
    lastAnswer = null;
    $("answer").hidden = true;
    say(`No answer: ${error.message}`, "error");
  } finally {
    bump("answers");
  }
}

function renderAnswer(answer, state) {
  const customer = state.get("customer");
  const flag = $("personalized");
  flag.dataset.value = String(answer.personalized);
  flag.textContent = answer.personalized ? `personalised for customer ${customer}`
    : customer ? `not personalised: customer ${customer} is unknown` : "not personalised: no customer";
  flag.classList.toggle("good", answer.personalized);
  $("answer-store").textContent = answer.store_known ? `store ${answer.store_id}`
    : `store ${answer.store_id} (unknown: chain-level rules)`;
  $("answer-intent").textContent = `intent ${answer.intent}`;
  $("answer-widened").hidden = !answer.widened;
  $("answer-metadata").hidden = !answer.metadata_based;
  const rules = answer.rules_applied || [];
  $("answer-rules").hidden = !rules.length;
  $("answer-rules").textContent = `rules: ${rules.join(", ")}`;
  $("item-card").replaceChildren(...itemCard(answer));
  $("item-card").dataset.itemId = answer.item.item_id;
  $("substitute-count").textContent = `${answer.substitutes.length} of k = ${state.get("k") || 5}`;
  $("substitutes").replaceChildren(...(answer.substitutes.length
    ? answer.substitutes.map((s, rank) => substituteCard(s, rank + 1, answer))
    : [el("p", { class: "muted" }, "No substitute passes the rules and the score cut-off.")]));
  $("answer").hidden = false;
  if ($("rules").hidden) {
    $("rules").hidden = false;
    loadRules();
  }
  if (!$("rule-body").value) $("rule-body").value = exampleRule(answer);
  updateAdmin();
}

function itemCard(answer) {
  const x = answer.item;
  const restock = answer.restock_eta ? `back ${date(answer.restock_eta)}` : "no restock date known";
  const card = [
    el("div", { class: "card-head" }, el("span", { class: "id" }, x.item_id),
      answer.metadata_based ? el("span", { class: "tag warn", title: "no events yet: substitutes from its group, "
        + "brand, size and price" }, "metadata-based") : null),
    el("h3", {}, x.brand, x.private_label ? el("span", { class: "tag" }, "store brand") : null),
    el("p", { class: "type" }, x.product_type, el("span", { class: "muted" }, ` · ${x.category} · ${x.department}`)),
    factsTable([
      ["size", [x.package_size || "–", x.size ? ` (${x.size})` : ""].join("")],
      ["price", money(x.price)],
      ["unit price", unitPrice(x.unit_price, x.unit_price_per)],
      ["attributes", attributesText(x.attributes)],
      [`at ${answer.store_id}`, restock],
      ["in stock at", answer.available_at.length ? answer.available_at.join(", ") : "no report"],
    ]),
  ];
  if (answer.variants.length) {
    card.push(el("h4", {}, "Other pack sizes"), el("ul", { class: "variants" }, answer.variants.map((v) =>
      el("li", { dataset: { itemId: v.item_id } },
        el("button", { type: "button", class: "link", onclick: () => openItem(v.item_id) }, v.package_size || v.size || v.item_id),
        v.price === null ? " · " : ` ${money(v.price)} · `,
        availabilityTag(v.availability, v.restock_eta),
        v.available_at.length ? el("span", { class: "muted" }, ` · also at ${v.available_at.join(", ")}`) : null,
        el("span", { class: "muted" }, ` · ${v.item_id}`)))));
  }
  return card;
}

// how an item's availability at the queried store is known: only a stock report says "in stock"
const AVAILABILITY = {
  in_stock: ["ok", "in stock here", "the store reported it in stock"],
  carried: ["muted", "carried here", "the retailer's assortment lists it for this store; no stock report"],
  likely: ["muted", "likely carried", "sold here (or in the chain) recently; no stock report"],
  unknown: ["warn", "unknown here", "no stock report and no assortment evidence"],
  out_of_stock: ["bad", "out here", "reported out of stock, or unlisted in the store's last snapshot"],
};

function availabilityTag(availability, restockEta) {
  const [cls, label, title] = AVAILABILITY[availability] || ["muted", availability, ""];
  const back = availability === "out_of_stock" && restockEta ? `, back ${date(restockEta)}` : "";
  return el("span", { class: `availability ${cls}`, dataset: { availability }, title }, label + back);
}

// the catalog's attributes of an item, "organic: yes · diet: gluten-free, vegan"; null (no row) when it has none
function attributesText(attributes) {
  const entries = Object.entries(attributes || {});
  return entries.length ? el("span", { class: "attributes" },
    entries.map(([name, values]) => `${name}: ${values.join(", ")}`).join(" · ")) : null;
}

function substituteCard(s, rank, answer) {
  const size = [s.package_size || s.size || "–"];
  if (s.size_difference) size.push(s.size_difference === "same" ? " (same size)" : ` (${s.size_difference}`
    + `${s.size_ratio ? `, ×${s.size_ratio}` : ""})`);
  const priceDifference = signedMoney(s.price_difference);
  return el("article", { class: `card sub${s.widened ? " widened" : ""}`, dataset: { itemId: s.item_id, rank } },
    el("div", { class: "card-head" },
      el("span", { class: "rank" }, `#${rank}`),
      el("button", { type: "button", class: "link id", title: "open this item", onclick: () => openItem(s.item_id) },
        s.item_id),
      el("span", { class: "score", title: "ranking score" }, s.score.toFixed(2))),
    el("h3", {}, s.brand,
      s.usual_brand ? el("span", { class: "tag good usual-brand" }, "your usual brand") : null,
      s.private_label ? el("span", { class: "tag" }, "store brand") : null),
    el("p", { class: "type" }, s.product_type,
      s.widened ? el("span", { class: "tag warn widened-mark", title: "from X's parent category" }, "widened") : null),
    factsTable([
      ["size", size.join("")],
      ["price", [money(s.price), priceDifference ? el("span", {
        class: s.price_difference < 0 ? "ok" : s.price_difference > 0 ? "bad" : "muted" }, ` ${priceDifference}`) : null]],
      ["you pay", s.shopper_price !== null && s.shopper_price !== s.price
        ? el("span", { class: "ok shopper-price", title: "price protection: no more than the item ordered" },
          money(s.shopper_price)) : null],
      ["unit price", unitPrice(s.unit_price, s.unit_price_per)],
      ["attributes", attributesText(s.attributes)],
      [`at ${answer.store_id}`, availabilityTag(s.availability, null)],
      ["bought before", s.bought_before ? `${s.bought_before}×` : null],
    ]),
    el("ul", { class: "reasons" }, s.reasons.map((reason) => el("li", {}, reason))),
    el("div", { class: "actions" },
      el("button", { type: "button", class: "admin-action out-of-stock", onclick: () => markOutOfStock(s.item_id) },
        "out of stock here"),
      el("button", { type: "button", class: "admin-action accept", onclick: () => sendFeedback(s.item_id, true) },
        "accept"),
      el("button", { type: "button", class: "admin-action reject", onclick: () => sendFeedback(s.item_id, false) },
        "reject")));
}

// ---- the customer's profile -----------------------------------------------------------------------------
function updateProfileLink() {
  const link = $("profile-link");
  const customer = $("customer").value.trim();
  link.hidden = !customer;
  const state = formState();
  if (readUrl().get("profile") === "1") state.delete("profile"); else state.set("profile", "1");
  link.href = `?${state}`;
  link.textContent = readUrl().get("profile") === "1" ? "hide profile" : "profile";
}

async function loadProfile() {
  await knowCurrency();
  const state = readUrl();
  const customer = state.get("customer");
  const panel = $("profile");
  if (state.get("profile") !== "1" || !customer) {
    panel.hidden = true;
    return;
  }
  try {
    const profile = await api(`/v1/customers/${encodeURIComponent(customer)}/profile?categories=${PROFILE_CATEGORIES}`,
      { scope: "profiles" });
    panel.replaceChildren(...profileView(profile));
  } catch (error) {
    panel.replaceChildren(el("p", { class: "error" }, `No profile for customer ${customer}: ${error.message}`));
  } finally {
    panel.hidden = false;
    bump("profiles");
  }
}

function profileView(p) {
  return [
    el("h2", {}, `Customer ${p.customer_id}`, p.segment ? el("span", { class: "tag" }, p.segment) : null),
    factsTable([
      ["segment", p.segment], ["last purchase", p.recency_days === null ? null : `${p.recency_days.toFixed(0)} days before the data's end`],
      ["baskets", p.baskets], ["spend", p.spend === null ? null : money(p.spend)],
      ["home store", p.home_store ? el("span", {}, p.home_store, " ", el("button", { type: "button", class: "link",
        onclick: () => { $("store").value = p.home_store; applyControls(); } }, "use this store")) : null],
      ["items", p.items],
    ]),
    el("table", { class: "results profile-categories" },
      el("thead", {}, el("tr", {}, ["category", "share", "purchases", "brands", "store brand", "usual size",
        "price band"].map((h) => el("th", {}, h)))),
      el("tbody", {}, p.categories.map((c) => el("tr", {},
        el("td", {}, c.category, el("span", { class: "muted" }, ` · ${c.department}`)),
        el("td", {}, percent(c.share, 1)),
        el("td", {}, c.purchases),
        el("td", {}, c.brands.map((b) => `${b.brand} ${percent(b.share)}`).join(", ")),
        el("td", {}, percent(c.private_label_share)),
        el("td", {}, c.usual_size || "–"),
        el("td", {}, c.price_band ? `${money(c.price_band.p25)}–${money(c.price_band.p75)}` : "–"))))),
  ];
}

// ---- stock and feedback (a key with the write scope, or the admin token) ---------------------------------
function token() {
  return $("token").value.trim();
}

// ---- merchandising rules ---------------------------------------------------------------------------------
async function loadRules() {
  const list = $("rule-list");
  if (!token()) {
    list.replaceChildren(el("li", { class: "muted" }, "enter the admin token to see and change the rules"));
    return;
  }
  try {
    const rules = await api("/v1/admin/rules", { scope: "admin" });
    list.replaceChildren(...(rules.length ? rules.map((rule) => el("li", { dataset: { rule: rule.name } },
      el("code", {}, JSON.stringify(rule)), " ",
      el("button", { type: "button", class: "admin-action rule-remove", onclick: () => removeRule(rule.name) },
        "remove"))) : [el("li", { class: "muted" }, "no rules")]));
  } catch (error) {
    list.replaceChildren(el("li", { class: "bad" }, error.message));
  }
  updateAdmin();
}

function exampleRule(answer) {
  const first = answer.substitutes[0];
  if (!first) return "";
  return JSON.stringify({ name: `review-block-${first.brand}`.replace(/[^A-Za-z0-9_.:-]/g, "-").slice(0, 100),
    action: "block", scope: { category: answer.item.category }, target: { brand: first.brand } });
}

async function addRule() {
  let rule;
  try {
    rule = JSON.parse($("rule-body").value);
  } catch (error) {
    return say(`The rule is not JSON: ${error.message}`, "error");
  }
  try {
    await api("/v1/admin/rules", { method: "POST", body: rule, scope: "admin" });
  } catch (error) {
    return say(`Rule refused: ${error.message}`, "error");
  }
  await loadRules();
  await loadAnswer();
  say(`Rule ${rule.name} added.`, "done");
  bump("rules");
}

async function removeRule(name) {
  try {
    await api(`/v1/admin/rules/${encodeURIComponent(name)}`, { method: "DELETE", as: "text", scope: "admin" });
  } catch (error) {
    return say(`Rule not removed: ${error.message}`, "error");
  }
  await loadRules();
  await loadAnswer();
  say(`Rule ${name} removed.`, "done");
  bump("rules");
}

function updateAdmin() {
  const hasToken = Boolean(token());
  for (const button of document.querySelectorAll(".admin-action")) {
    button.disabled = !hasToken;
    button.title = hasToken ? "" : "enter an API key with the write scope (or the admin token) first";
  }
  $("admin-state").textContent = hasToken ? "sent with every call (the server checks what it may do)"
    : "read-only: stock changes and feedback need an API key with the write scope, or the admin token";
}

async function markOutOfStock(itemId, inStock = false) {
  if (!token()) return say("Enter an API key with the write scope (or the admin token) first.", "error");
  const store = lastAnswer ? lastAnswer.store_id : (readUrl().get("store") || "online");
  try {
    await api("/v1/inventory", { method: "PUT", scope: "write",
      body: { updates: [{ item_id: itemId, store_id: store, in_stock: inStock }] } });
  } catch (error) {
    return say(`Stock change refused: ${error.message}`, "error");
  }
  noteStockChange(itemId, store, inStock);
  await loadAnswer();
  say(`${itemId} marked ${inStock ? "in stock" : "out of stock"} at ${store}.`, "done");
}

function noteStockChange(itemId, store, inStock) {
  const list = $("stock-change-list");
  list.append(el("li", { dataset: { itemId } }, `${itemId} ${inStock ? "in stock" : "out of stock"} at ${store} `,
    inStock ? null : el("button", { type: "button", class: "admin-action restock",
      onclick: () => markOutOfStock(itemId, true) }, "back in stock")));
  $("stock-changes").hidden = false;
  updateAdmin();
}

async function sendFeedback(itemId, accepted) {
  if (!token()) return say("Enter an API key with the write scope (or the admin token) first.", "error");
  if (!lastAnswer) return say("No answer to give feedback on.", "error");
  // the answer's signed id says which item, customer, store and substitutes the decision is about
  const answer = lastAnswer;
  const body = { answer_id: answer.answer_id, source: "picker" };
  if (accepted) body.accepted = itemId; else body.rejected = [itemId];
  try {
    const recorded = await api("/v1/feedback", { method: "POST", body, scope: "write" });
    say(`Feedback #${recorded.id}${recorded.duplicate ? " (recorded before)" : ""}: ${itemId} `
      + `${accepted ? "accepted" : "rejected"} instead of ${answer.item.item_id}.`, "done");
  } catch (error) {
    say(`Feedback refused: ${error.message}`, "error");
  }
}

// ---- wiring ---------------------------------------------------------------------------------------------
function applyControls() {
  pushState(formState());
  updateProfileLink();
  loadAnswer();
  loadProfile();
}

function load() {
  const state = readUrl();
  fillForm(state);
  runSearch();
  loadAnswer();
  loadProfile();
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = apiKey();
  $("token").addEventListener("input", () => {
    // kept for this tab only (sessionStorage), never in the URL; sent with every call from now on
    storeApiKey(token());
    updateAdmin();
    if (!$("rules").hidden) loadRules();
  });
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const state = formState();
    const query = $("q").value.trim();
    if (query) state.set("q", query); else state.delete("q");
    state.delete("offset");
    pushState(state);
    runSearch();
  });
  $("search-prev").addEventListener("click", () => pageSearch(-1));
  $("search-next").addEventListener("click", () => pageSearch(1));
  $("controls").addEventListener("submit", (event) => {
    event.preventDefault();
    applyControls();
  });
  $("customer").addEventListener("input", updateProfileLink);
  $("profile-link").addEventListener("click", (event) => {
    event.preventDefault();
    pushState(new URLSearchParams($("profile-link").search));
    updateProfileLink();
    loadProfile();
  });
  window.addEventListener("popstate", load);
  $("rule-add").addEventListener("click", addRule);
  updateAdmin();
  showModelVersion();
  load();
});
