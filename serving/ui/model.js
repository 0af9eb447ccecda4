// The model page: the serving model's version and manifest summary, its held-out metrics, and its report
// (report.md and its plots, as the trainer wrote them), all from the public HTTP API.
"use strict";

const $ = (id) => document.getElementById(id);

function summaryView(model) {
  const span = model.data_span || {};
  return [
    el("h2", {}, "Model ", el("span", { id: "summary-version" }, model.model_version)),
    factsTable([
      ["created", model.created_at],
      ["data", `${span.start || "?"} .. ${span.end || "?"}`],
      ["trained until", model.train_until],
      ["ranker", `${model.ranker} weights${model.reranker_trees ? `, re-ranked by ${model.reranker_trees} trees` : ""}`],
      ...Object.entries(model.counts).filter(([, v]) => typeof v === "number")
        .map(([name, value]) => [name.replaceAll("_", " "), value.toLocaleString()]),
    ]),
  ];
}

function heldoutView(model) {
  const heldout = model.heldout;
  const out = [el("h2", {}, "Held-out metrics")];
  if (!heldout || !heldout.methods) {
    out.push(el("p", { class: "muted" }, "None: the ranker was not fitted (disabled, or too little data)."));
    return out;
  }
  const queries = heldout.queries || {};
  out.push(el("p", {}, `Switch queries from ${String(heldout.split).slice(0, 10)} on: `
    + `${(queries.all || 0).toLocaleString()} queries, ${(queries.new_to_customer || 0).toLocaleString()} `
    + "with an item new to the customer."));
  const subsets = Object.keys(heldout.methods.ours || Object.values(heldout.methods)[0]);
  const metrics = subsets.map((subset) => [subset, Object.keys(heldout.methods.ours?.[subset]
    || Object.values(heldout.methods)[0][subset])]);
  const methods = Object.entries(heldout.methods).sort((a, b) => (b[1].all?.["HR@3"] || 0) - (a[1].all?.["HR@3"] || 0));
  out.push(el("table", { class: "results metrics" },
    el("thead", {},
      el("tr", {}, el("th", { rowspan: 2 }, "method"),
        metrics.map(([subset, names]) => el("th", { colspan: names.length }, subset.replaceAll("_", " ")))),
      el("tr", {}, metrics.flatMap(([, names]) => names.map((name) => el("th", {}, name))))),
    el("tbody", {}, methods.map(([method, values]) => el("tr", { class: method === "ours" ? "ours" : "" },
      el("th", { scope: "row" }, method),
      metrics.flatMap(([subset, names]) => names.map((name) => {
        const value = values[subset]?.[name];
        return el("td", {}, typeof value === "number" ? value.toFixed(3) : "–");
      })))))));
  if (model.coverage && model.coverage.items_sampled) {
    const ks = Object.keys(model.coverage).filter((key) => key.startsWith("at_least_"))
      .sort((a, b) => Number(a.slice(9)) - Number(b.slice(9)));
    out.push(el("h3", {}, "Coverage"), el("p", {}, `Of ${model.coverage.items_sampled.toLocaleString()} sampled items, `
      + "the share with at least k substitutes:"),
    el("table", { class: "results" }, el("thead", {}, el("tr", {}, ks.map((key) => el("th", {}, `k = ${key.slice(9)}`)))),
      el("tbody", {}, el("tr", {}, ks.map((key) => el("td", {}, percent(model.coverage[key], 1)))))));
  }
  return out;
}

// ---- a small Markdown reader for the trainer's report: headings, paragraphs, lists, tables, images, emphasis ----
function inline(text, node) {
  // **bold**, _italic_ and `code`; everything else is text (never parsed as HTML)
  const pattern = /\*\*(.+?)\*\*|`([^`]+)`|(?<![\w])_(.+?)_(?![\w])/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    node.append(text.slice(last, match.index));
    if (match[1] !== undefined) node.append(el("strong", {}, match[1]));
    else if (match[2] !== undefined) node.append(el("code", {}, match[2]));
    else node.append(el("em", {}, match[3]));
    last = match.index + match[0].length;
  }
  node.append(text.slice(last));
  return node;
}

function cells(line) {
  return line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((cell) => cell.trim());
}

function markdown(source, files) {
  const blocks = [];
  const lines = source.split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const heading = line.match(/^(#{1,4})\s+(.*)$/);
    const image = line.match(/^!\[([^\]]*)\]\(([^)\s]+)\)\s*$/);
    if (!line.trim()) { i += 1; continue; }
    if (heading) {
      blocks.push(inline(heading[2], el(`h${Math.min(heading[1].length + 1, 5)}`)));
      i += 1;
    } else if (image) {
      // only the report's own files, served read-only by the API (fetched with the key: see loadImages)
      const name = image[2];
      blocks.push(files.includes(name)
        ? el("figure", {}, el("img", { dataset: { file: name }, alt: image[1] }), el("figcaption", {}, image[1]))
        : el("p", { class: "muted" }, `[${image[1]}]`));
      i += 1;
    } else if (line.startsWith("|") && (lines[i + 1] || "").match(/^\|(\s*:?-+:?\s*\|)+\s*$/)) {
      const header = cells(line);
      i += 2;
      const rows = [];
      while (i < lines.length && lines[i].startsWith("|")) rows.push(cells(lines[i++]));
      blocks.push(el("table", { class: "results" },
        el("thead", {}, el("tr", {}, header.map((h) => inline(h, el("th"))))),
        el("tbody", {}, rows.map((row) => el("tr", {}, row.map((cell) => inline(cell, el("td"))))))));
    } else if (/^[-*]\s+/.test(line)) {
      const items = [];
      while (i < lines.length && /^[-*]\s+/.test(lines[i])) items.push(lines[i++].replace(/^[-*]\s+/, ""));
      blocks.push(el("ul", {}, items.map((item) => inline(item, el("li")))));
    } else {
      const paragraph = [];
      while (i < lines.length && lines[i].trim() && !/^(#|\||!\[|[-*]\s)/.test(lines[i])) paragraph.push(lines[i++]);
      if (!paragraph.length) paragraph.push(lines[i++]);
      blocks.push(inline(paragraph.join(" "), el("p")));
    }
  }
  return blocks;
}

/** A Blob as a data: URL (what the page's Content-Security-Policy lets an image show). */
function dataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

/** Fill in the report's images: fetched through api(), which sends the key entered (an <img src> cannot). */
async function loadImages(container) {
  await Promise.all([...container.querySelectorAll("img[data-file]")].map(async (img) => {
    try {
      img.src = await dataUrl(await api(`/v1/model/report/${encodeURIComponent(img.dataset.file)}`, { as: "blob" }));
      await img.decode();
    } catch (error) {
      img.replaceWith(el("p", { class: "muted" }, `[${img.alt}: ${error.message}]`));
    }
  }));
}

async function load() {
  showModelVersion();
  try {
    const model = await api("/v1/model");
    $("summary").replaceChildren(...summaryView(model));
    $("heldout").replaceChildren(...heldoutView(model));
    if (model.report_files.includes("report.md")) {
      const text = await api("/v1/model/report/report.md", { as: "text" });
      $("report").replaceChildren(el("h2", {}, "Report"), ...markdown(text, model.report_files));
      await loadImages($("report"));
    } else {
      $("report").replaceChildren(el("h2", {}, "Report"), el("p", { class: "muted" }, "This model has no report."));
    }
  } catch (error) {
    $("status").textContent = `Cannot read the model: ${error.message}`;
    $("status").dataset.kind = "error";
  } finally {
    document.body.dataset.loaded = "1";
  }
}

document.addEventListener("DOMContentLoaded", load);
