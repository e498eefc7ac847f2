// LakeRAG console: plain JavaScript over the API's JSON routes (same origin, no libraries).
// Text from the API is always inserted as text (textContent), never as HTML.
"use strict";

// The write key lives in sessionStorage: it survives a reload of this tab and is gone
// when the tab closes; it is never written to localStorage.
const KEY_STORAGE = "lakerag.apiKey";
const $ = (id) => document.getElementById(id);

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function detailOf(data) {
  if (!data) return "";
  const detail = data.detail ?? data.message ?? data.reason;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  return detail ? String(detail) : "";
}

// One sentence per failure a person can act on.
function explain(status, data, action) {
  const detail = detailOf(data);
  switch (status) {
    case 0: return `Cannot reach the API (${detail || "network error"}). Is the server running?`;
    case 401: return `${action} needs the API key. Enter it under "API key" in Documents; it is kept only in this tab.`;
    case 403: return `The API key was refused (${detail}). Enter the key again under "API key".`;
    case 404: return `Not found: ${detail}`;
    case 413: return `File too large: ${detail}`;
    case 415: return `File type not accepted: ${detail}`;
    case 422: return `The request was not valid: ${detail}`;
    case 502: return `An upstream service failed (${detail}). Try again; if it persists, check the API's logs.`;
    case 503: return `Not ready yet: ${detail}`;
    case 504: return `The answer took too long (${detail}). Try again or ask a narrower question.`;
    default: return `${action} failed (HTTP ${status}): ${detail}`;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && apiKey()) headers["X-API-Key"] = apiKey();
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    return { status: 0, ok: false, data: { detail: String(error) } };
  }
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  return { status: response.status, ok: response.ok, data };
}

function say(id, text, isError = false) {
  const node = $(id);
  node.textContent = text;
  node.classList.toggle("error", isError);
}

async function busy(button, work) {
  button.disabled = true;
  try { return await work(); } finally { button.disabled = false; }
}

// ---- status -----------------------------------------------------------------------
function ago(seconds) {
  if (seconds == null) return "–";
  const units = [[86400, "day"], [3600, "hour"], [60, "minute"]];
  for (const [size, name] of units) {
    if (seconds >= size) {
      const n = Math.floor(seconds / size);
      return `${n} ${name}${n === 1 ? "" : "s"} ago`;
    }
  }
  return "just now";
}

function mark(id, text, tone, title = "") {
  const node = $(id);
  node.textContent = text;
  node.className = tone;
  node.title = title;
}

async function refreshStatus() {
  const [ready, index, pipeline] = await Promise.all([api("GET", "ready"), api("GET", "index"), api("GET", "pipeline")]);
  if (ready.status === 0) mark("status-health", "API unreachable", "bad");
  else if (ready.data && ready.data.ready) mark("status-health", `ready (${ready.data.model})`, "good");
  else mark("status-health", `not ready: ${detailOf(ready.data) || "starting"}`, "warn");

  if (index.ok && index.data.loaded) {
    const d = index.data;
    // Serving, but not the version the store names current (refused, or the store unreachable).
    if (d.sync_state && d.sync_state !== "ok") mark("status-index", `${d.vectors} vectors · ${d.message}`, "warn");
    else mark("status-index", `${d.version} · ${d.vectors} vectors · ${d.search_modes.join("/")}`, "good");
    const age = d.age_seconds;
    mark("status-age", `${ago(age)}${d.created_at ? ` (${d.created_at})` : ""}`, age > 86400 ? "warn" : "good");
  } else {
    mark("status-index", index.ok ? index.data.message : "unknown", "warn");
    mark("status-age", "–", "");
  }

  if (pipeline.ok) {
    const p = pipeline.data;
    const ran = p.stages.filter((s) => s.ran);
    if (!p.readable) mark("status-pipeline", `summaries unreadable: ${p.error}`, "bad");
    else if (!ran.length) mark("status-pipeline", "not run yet", "warn");
    else {
      const failed = ran.filter((s) => !s.ok).map((s) => s.stage);
      const last = ran.map((s) => s.finished_at).filter(Boolean).sort().pop();
      // p.healthy is `lakerag pipeline status`'s verdict: quarantined files or a stage that
      // never finished count against it too; a stage in flight on the API's host does not.
      const unfinished = p.unfinished || [];
      const running = p.running || [];
      const parts = [failed.length ? `failed: ${failed.join(", ")}`
        : unfinished.length ? `unfinished: ${unfinished.join(", ")}`
        : running.length ? `running: ${running.join(", ")}` : p.healthy ? "healthy" : "needs attention"];
      if (p.quarantined) parts.push(`${p.quarantined} quarantined`);
      // This browser's clock against the stage's: a few seconds of skew still reads "just now".
      if (last) parts.push(`last run ${ago(Math.max(0, (Date.now() - Date.parse(last)) / 1000))}`);
      mark("status-pipeline", parts.join(" · "), failed.length ? "bad" : p.healthy ? "good" : "warn",
        last ? `last run finished at ${last}` : "");
    }
  } else {
    mark("status-pipeline", "unknown", "warn");
  }
}

// ---- search and ask ----------------------------------------------------------------------
function contentUrl(docId) {
  return `documents/${encodeURIComponent(docId)}/content`;
}

function fmt(value, digits = 3) {
  return value == null ? null : Number(value).toFixed(digits);
}

function hitItem(hit, id) {
  const where = [`source: ${hit.source}`];
  if (hit.page != null) where.push(`page ${hit.page}`);
  if (hit.score != null) where.push(`score ${fmt(hit.score)}`);
  if (hit.dense_rank != null) where.push(`dense #${hit.dense_rank} (${fmt(hit.dense_score)})`);
  if (hit.lexical_rank != null) where.push(`lexical #${hit.lexical_rank} (${fmt(hit.lexical_score, 2)})`);
  const attrs = id ? { id, tabindex: "-1" } : {};
  // A PDF opens at the cited page (#page=N: Chromium's, Firefox's and Acrobat's viewers).
  const at = hit.page != null && /\.pdf$/i.test(hit.source) ? `#page=${hit.page}` : "";
  const link = el("a", { href: contentUrl(hit.doc_id) + at, target: "_blank", rel: "noopener",
    text: hit.title || hit.source });
  return el("li", attrs,
    el("div", {}, link),
    el("div", { class: "hit-meta", text: where.join(" · ") }),
    el("p", { class: "hit-text", text: hit.text }));
}

async function onSearch(event) {
  event.preventDefault();
  const form = event.target;
  const query = $("search-query").value.trim();
  const mode = form.querySelector("input[name=mode]:checked").value;
  const k = Number($("search-k").value) || 5;
  const list = $("search-results");
  list.replaceChildren();
  say("search-message", "Searching…");
  const body = withAsOf(onlyIn({ query, k, mode }, "search-only"), "search-as-of");
  const result = await busy(form.querySelector("button"), () => api("POST", "search", body));
  if (!result.ok) return say("search-message", explain(result.status, result.data, "Search"), true);
  const d = result.data;
  const note = d.note ? ` ${d.note}` : "";
  if (!d.matched) say("search-message", `Nothing relevant found: ${d.reason || "no match"}.${note}`);
  else say("search-message", `${d.hits.length} hit${d.hits.length === 1 ? "" : "s"} (${d.mode}, ${indexOf(d)}, ` +
    `${Math.round(d.encode_ms + d.search_ms)} ms).${note}`);
  list.append(...d.hits.map((hit) => hitItem(hit)));
}

// "Only in files starting with": a file name or a folder under raw/, sent as source_prefix.
function onlyIn(body, inputId) {
  const start = $(inputId).value.trim().replace(/^\/+/, "");
  if (!start) return body;
  return { ...body, source_prefix: start.startsWith("raw/") ? start : `raw/${start}` };
}

// Replay: an index version typed in the form is sent as as_of; empty asks the served index.
function withAsOf(body, inputId) {
  const version = $(inputId).value.trim();
  return version ? { ...body, as_of: version } : body;
}

// The browser's own "Please match the requested format." says nothing of the format.
function explainVersionFormat(input) {
  input.setCustomValidity("");
  if (input.validity.patternMismatch) {
    input.setCustomValidity("Enter an index version, such as 20261205T011206Z-577437dc (results name theirs), " +
      "or leave it empty for the index served now.");
  }
}

// "index V" (or "from index V" with from = "from "), "replayed on index V" for a replay.
function indexOf(d, from = "") {
  return `${d.lineage && d.lineage.replayed ? "replayed on " : from}index ${d.index_version}`;
}

// "[2]" in the answer becomes a link to cited passage 2 (chunks[1]).
function answerWithLinks(text, count) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(/\[(\d+)\]/g)) {
    const n = Number(match[1]);
    if (n < 1 || n > count) continue;
    parts.push(document.createTextNode(text.slice(last, match.index)));
    const link = el("a", { href: `#cite-${n}`, class: "citation", "aria-label": `citation ${n}`, text: match[0] });
    link.addEventListener("click", (e) => {
      e.preventDefault();
      const target = $(`cite-${n}`);
      history.replaceState(null, "", `#cite-${n}`);
      target.scrollIntoView({ block: "center" });
      target.focus();
    });
    parts.push(link);
    last = match.index + match[0].length;
  }
  parts.push(document.createTextNode(text.slice(last)));
  return parts;
}

async function onAsk(event) {
  event.preventDefault();
  const form = event.target;
  const question = $("ask-question").value.trim();
  $("ask-answer").replaceChildren();
  $("ask-chunks").replaceChildren();
  $("ask-sources-heading").hidden = true;
  say("ask-message", "Thinking…");
  const body = withAsOf(onlyIn({ question }, "ask-only"), "ask-as-of");
  const result = await busy(form.querySelector("button"), () => api("POST", "answer", body));
  if (!result.ok) return say("ask-message", explain(result.status, result.data, "Asking"), true);
  const d = result.data;
  say("ask-message", d.matched ? `Answer (${d.mode}) ${indexOf(d, "from ")}.`
    : `Nothing relevant found${d.reason ? `: ${d.reason}` : ""}.`);
  $("ask-answer").append(...answerWithLinks(d.answer, d.chunks.length));
  $("ask-sources-heading").hidden = d.chunks.length === 0;
  $("ask-chunks").append(...d.chunks.map((hit, i) => hitItem(hit, `cite-${i + 1}`)));
}

// ---- API key ------------------------------------------------------------------------
function showKeyState() {
  say("key-state", apiKey() ? "A key is set for this tab." : "No key set: uploads and deletes will ask for one.");
}

function onKey(event) {
  event.preventDefault();
  const value = $("api-key").value.trim();
  if (value) sessionStorage.setItem(KEY_STORAGE, value);
  $("api-key").value = "";
  showKeyState();
}

// ---- upload ---------------------------------------------------------------------------------
function uploadOne(file) {
  const progress = el("progress", { max: "100", value: "0", "aria-label": `Upload progress of ${file.name}` });
  const status = el("span", { class: "upload-status", role: "status", text: "uploading…" });
  const item = el("li", {}, el("span", { text: file.name }), progress, status);
  $("upload-list").append(item);
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "documents");
    xhr.setRequestHeader("Accept", "application/json");
    if (apiKey()) xhr.setRequestHeader("X-API-Key", apiKey());
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) progress.value = Math.round((100 * e.loaded) / e.total);
    });
    xhr.addEventListener("load", () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { data = null; }
      const stored = xhr.status === 201 || xhr.status === 200; // 200: the same bytes were already stored
      if (stored) {
        progress.value = 100;
        // The API's note says what indexes it and when (`lakerag run`'s watcher, Airflow, a manual run).
        status.textContent = `${data.note}${data.replaced ? " (it replaced the previous file)" : ""}`;
        status.className = "upload-status good";
      } else {
        status.textContent = explain(xhr.status, data, "Uploading");
        status.className = "upload-status bad";
        item.classList.add("failed");
      }
      resolve(stored);
    });
    xhr.addEventListener("error", () => {
      status.textContent = explain(0, null, "Uploading");
      status.className = "upload-status bad";
      item.classList.add("failed");
      resolve(false);
    });
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

async function uploadAll(files) {
  if (!files.length) return;
  await Promise.all(Array.from(files).map(uploadOne));
  await refreshDocuments();
}

function setUpDropZone() {
  const zone = $("drop-zone");
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    uploadAll(e.dataTransfer.files);
  });
  $("upload-input").addEventListener("change", (e) => {
    uploadAll(e.target.files).then(() => { e.target.value = ""; });
  });
}

// ---- documents ---------------------------------------------------------------------------------
const STATE_TEXT = {
  indexed: (d) => `Indexed (${d.chunks} chunk${d.chunks === 1 ? "" : "s"})`,
  landed: () => "Waiting for the pipeline",
  processed: (d) => `Processed: ${d.reason}`,
  quarantined: (d) => `Quarantined: ${d.reason}`,
};

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1048576) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

// A document's Ask button: the Ask form kept to that file, ready for the question.
function askAbout(doc) {
  $("ask-only").value = doc.key.replace(/^raw\//, "");
  $("ask").scrollIntoView({ block: "start" });
  $("ask-question").focus();
}

function documentRow(doc) {
  const remove = el("button", { type: "button", class: "danger", "aria-label": `Delete ${doc.key}`, text: "Delete" });
  remove.addEventListener("click", () => deleteDocument(doc, remove));
  const actions = el("td", { class: "actions" });
  if (doc.state === "indexed") {
    const ask = el("button", { type: "button", class: "secondary", "aria-label": `Ask ${doc.key}`, text: "Ask" });
    ask.addEventListener("click", () => askAbout(doc));
    actions.append(ask);
  }
  actions.append(remove);
  const name = el("td", {}, el("a", { href: contentUrl(doc.doc_id), target: "_blank", rel: "noopener",
    text: doc.key.replace(/^raw\//, "") }));
  if (doc.title) name.append(el("small", { text: doc.title }));
  return el("tr", { id: `doc-${doc.doc_id}`, "data-state": doc.state },
    name,
    el("td", { class: `state state-${doc.state}`, text: STATE_TEXT[doc.state](doc) }),
    el("td", { text: size(doc.size) }),
    actions);
}

// A lake's thousands of rows took seconds to draw and could not be scanned by eye: draw the
// first SHOWN_ROWS of those the filter matches, and say how many there are.
const SHOWN_ROWS = 200;
let listed = { documents: [], counts: {} };

function matchesFilter(doc, words) {
  const text = `${doc.key} ${doc.title || ""} ${doc.state} ${doc.reason || ""}`.toLowerCase();
  return words.every((word) => text.includes(word));
}

function showDocuments() {
  const words = $("documents-filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  const all = listed.documents;
  const found = words.length ? all.filter((doc) => matchesFilter(doc, words)) : all;
  $("documents-table").querySelector("tbody").replaceChildren(...found.slice(0, SHOWN_ROWS).map(documentRow));
  const counts = Object.entries(listed.counts).map(([state, n]) => `${n} ${state}`).join(", ");
  let caption = all.length ? `${all.length} files in the store (${counts})` : "No files in the store yet: upload some above.";
  if (words.length) caption += `; ${found.length} match the filter`;
  if (found.length > SHOWN_ROWS) caption += `; showing the first ${SHOWN_ROWS}: filter by name or state to see others`;
  $("documents-caption").textContent = caption;
}

async function refreshDocuments() {
  const result = await api("GET", "documents");
  if (!result.ok) return say("documents-message", explain(result.status, result.data, "Listing documents"), true);
  listed = result.data;
  showDocuments();
}

async function deleteDocument(doc, button) {
  if (!window.confirm(`Delete ${doc.key}? Its chunks leave the index at the next pipeline run.`)) return;
  const result = await busy(button, () => api("DELETE", `documents/${encodeURIComponent(doc.doc_id)}`));
  if (!result.ok) return say("documents-message", explain(result.status, result.data, "Deleting"), true);
  say("documents-message", `Deleted ${doc.key}: ${result.data.note}.`);
  await refreshDocuments();
}

async function reloadIndex(event) {
  const result = await busy(event.target, () => api("POST", "admin/reload"));
  if (!result.ok) return say("documents-message", explain(result.status, result.data, "Reloading the index"), true);
  const d = result.data;
  say("documents-message", d.changed ? `Now serving index ${d.version}.` : `No newer index: ${d.message}.`);
  await Promise.all([refreshStatus(), refreshDocuments()]);
}

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").addEventListener("submit", onSearch);
  $("ask-form").addEventListener("submit", onAsk);
  $("key-form").addEventListener("submit", onKey);
  $("key-forget").addEventListener("click", () => { sessionStorage.removeItem(KEY_STORAGE); showKeyState(); });
  $("documents-refresh").addEventListener("click", () => Promise.all([refreshDocuments(), refreshStatus()]));
  $("index-reload").addEventListener("click", reloadIndex);
  $("documents-filter").addEventListener("input", showDocuments);
  for (const input of document.querySelectorAll("input.as-of")) {
    input.addEventListener("input", () => explainVersionFormat(input));
  }
  setUpDropZone();
  showKeyState();
  refreshStatus();
  refreshDocuments();
  setInterval(refreshStatus, 30000);
});
