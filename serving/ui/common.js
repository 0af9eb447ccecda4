// Shared by the review page and the model page: calling the HTTP API and building the DOM safely.
// Plain browser JavaScript, no framework and nothing fetched from elsewhere: the pages must work offline.
"use strict";

// the API key or admin token a reviewer entered: kept for this tab only (sessionStorage, shared by the review and
// model pages), sent as the bearer on every API call, never put in the URL
const TOKEN_KEY = "recsys-api-key";

/** An API error with the HTTP status and the server's own message. */
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The API key or admin token entered in this tab ("" when none). */
function apiKey() {
  return (sessionStorage.getItem(TOKEN_KEY) || "").trim();
}

function storeApiKey(key) {
  if (key) sessionStorage.setItem(TOKEN_KEY, key); else sessionStorage.removeItem(TOKEN_KEY);
}

/** What a 401 or 403 means to a person using the page: which key it needs, and where to enter it. */
function accessMessage(status, scope, detail, sent) {
  const where = document.getElementById("token") ? "above" : "on the review page (/ui)";
  if (status === 401 && !sent) return `this service needs an API key with the ${scope} scope: enter it ${where}`;
  if (status === 401) return `the API key or admin token entered is not accepted (${detail}): check it ${where}`;
  return `the API key entered does not hold the ${scope} scope (${detail}): enter one that does ${where}`;
}

/** Call the API with the key entered (if any) as the bearer; resolve to the parsed JSON (or text, or a Blob), reject
 * with an ApiError carrying the server's detail. ``scope`` names what the call needs, for the message of a 401/403. */
async function api(path, { method = "GET", body = undefined, as = "json", scope = "read" } = {}) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  const key = apiKey();
  if (key) headers["authorization"] = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    throw new ApiError(0, `the server did not answer (${error.message})`);
  }
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const payload = await response.json();
      detail = typeof payload.detail === "string" ? payload.detail
        : (payload.detail || []).map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
    } catch (_) { /* not JSON: keep the status text */ }
    if (response.status === 401 || response.status === 403) detail = accessMessage(response.status, scope, detail, Boolean(key));
    throw new ApiError(response.status, `${response.status}: ${detail}`);
  }
  if (as === "text") return response.text();
  return as === "blob" ? response.blob() : response.json();
}

/** Build an element: el("div", {class: "x", dataset: {id: 1}}, "text", child, ...). Text is never parsed as HTML. */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// the currency of the catalog's prices (the service's RECSYS_CURRENCY, from GET /v1/model); until it is known,
// amounts are shown without a symbol rather than with a wrong one
let currencyCode = null;

/** Learn the service's currency once (a page calls this before it shows prices). */
async function knowCurrency() {
  if (currencyCode !== null) return;
  try {
    currencyCode = (await api("/v1/model")).currency || null;
  } catch (_) { /* no key yet, or no model: amounts stay without a symbol */ }
}

function formatAmount(value, options = {}) {
  const style = currencyCode ? { style: "currency", currency: currencyCode } : { minimumFractionDigits: 2 };
  return new Intl.NumberFormat("en", { ...style, maximumFractionDigits: 2, ...options }).format(value);
}

function money(value) {
  return value === null || value === undefined ? "–" : formatAmount(Number(value));
}

/** A price per unit: cents, or two significant digits below ten cents (bulk packs cost fractions of a cent). */
function unitPrice(value, per) {
  if (value === null || value === undefined) return "–";
  const amount = value >= 0.1 ? formatAmount(value) : formatAmount(value, { maximumSignificantDigits: 2 });
  return `${amount} / ${per}`;
}

function signedMoney(value) {
  if (value === null || value === undefined) return "";
  if (value === 0) return "same price";
  return value < 0 ? `${formatAmount(-value)} cheaper` : `${formatAmount(value)} more`;
}

function percent(value, digits = 0) {
  return value === null || value === undefined ? "–" : `${(100 * value).toFixed(digits)}%`;
}

function date(value) {
  return value ? new Date(value).toISOString().slice(0, 16).replace("T", " ") + " UTC" : "";
}

/** A two-column table of label/value rows, skipping empty values. */
function factsTable(rows, className = "facts") {
  return el("table", { class: className },
    el("tbody", {}, rows.filter(([, value]) => value !== undefined && value !== null && value !== "")
      .map(([label, value]) => el("tr", {}, el("th", { scope: "row" }, label), el("td", {}, value)))));
}

/** The model version in the header of every page. */
async function showModelVersion() {
  const target = document.getElementById("model-version");
  if (!target) return;
  try {
    const ready = await api("/readyz");
    target.textContent = ready.model_version || "";
  } catch (error) {
    target.textContent = "no model loaded";
  }
}
