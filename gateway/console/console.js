// The gateway's read-only console: reads the admin JSON API and renders it.
// Everything shown comes from chargers and CSMSs (ids, payloads), so it is only ever set as
// textContent or attribute values, never parsed as HTML.
"use strict";

const REFRESH_MS = 5000;
const TOKEN_KEY = "ocpp-gateway-admin-token";
const MESSAGES_SHOWN = 50;
const PAYLOAD_CHARS = 300;

class NeedsToken extends Error {}
class NotAvailable extends Error {}

let refreshing = false;

function $(id) {
  return document.getElementById(id);
}

/** An element with text (never HTML) and optional class. */
function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

/** GET an admin API path as JSON, with the tab's token if it has one. */
async function api(path) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const resp = await fetch(path, { headers, cache: "no-store" });
  if (resp.status === 401) throw new NeedsToken(token ? "The token was not accepted." : "This admin API needs a token.");
  if (resp.status === 404) throw new NotAvailable(path);
  if (!resp.ok) {
    let detail = resp.statusText;
    try {
      detail = (await resp.json()).error || detail;
    } catch (_) { /* not JSON: keep the status text */ }
    throw new Error(`${path}: ${resp.status} ${detail}`);
  }
  return resp.json();
}

function selectedCharger() {
  const match = /^#charger=(.*)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

function formatRoute(route) {
  if (!route) return "none";
  if (typeof route === "string") return route;
  const inner = route.route || route.to || route;
  if (inner.primary === undefined) return JSON.stringify(inner);
  return inner.shadow ? `${inner.primary} (shadow ${inner.shadow})` : String(inner.primary);
}

function ago(iso) {
  if (!iso) return "never";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (!Number.isFinite(seconds)) return String(iso);
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

function agreement(row) {
  if (!row || !row.compared) return "—";
  const pct = Math.round((100 * row.agreed) / row.compared);
  const ready = row.readiness && row.readiness.ready ? ", ready" : "";
  return `${row.agreed}/${row.compared} (${pct}%) with ${row.csms}${ready}`;
}

// A charger's store-and-forward queue as GET /api/chargers gives it: offline.queued, offline.oldest_age_s.
function offlineQueue(queue) {
  if (queue === null || queue === undefined) return "—";
  if (typeof queue === "number") return `${queue} records`;
  const records = queue.queued ?? 0;
  if (!records) return "empty";
  const oldest = queue.oldest_age_s ? `, oldest ${Math.round(queue.oldest_age_s)} s` : "";
  return `${records} records${oldest}`;
}

function chargerLink(id) {
  const button = el("button", id, "charger");
  button.type = "button";
  button.addEventListener("click", () => {
    location.hash = "charger=" + encodeURIComponent(id);
  });
  return button;
}

function renderEstate(chargers, migration) {
  const rows = new Map();
  for (const row of (migration && migration.chargers) || []) rows.set(row.id, row);
  const selected = selectedCharger();
  const body = $("estate").tBodies[0];
  body.replaceChildren();
  for (const charger of chargers) {
    const m = rows.get(charger.id) || {};
    const tr = document.createElement("tr");
    tr.dataset.charger = charger.id;
    if (charger.id === selected) tr.className = "selected";
    const idCell = document.createElement("td");
    idCell.append(chargerLink(charger.id));
    const routeCell = el("td", formatRoute(charger.route));
    const change = charger.route_change;
    if (change) routeCell.append(el("span", "pending change: " + formatRoute(change), "pending"));
    tr.append(
      idCell,
      el("td", charger.ocpp_version || "—"),
      routeCell,
      el("td", m.phase || "—"),
      el("td", charger.connected ? "yes" : "no", charger.connected ? "yes" : "no"),
      el("td", ago(charger.last_message_at)),
      el("td", agreement(m)),
      el("td", offlineQueue(charger.offline ?? m.offline_queue)),
    );
    body.append(tr);
  }
  const summary = migration && migration.summary;
  $("estate-summary").textContent = summary
    ? `${chargers.length} chargers, ${chargers.filter((c) => c.connected).length} connected, ` +
      `${summary.ready} ready to move`
    : `${chargers.length} chargers`;
}

function count(value) {
  if (Array.isArray(value)) return value.length;
  return typeof value === "number" ? value : 0;
}

function renderPlans(answer) {
  const note = $("plans-note");
  const table = $("plans");
  if (answer instanceof Error) {
    note.textContent = answer instanceof NotAvailable ? "Plans: not available on this gateway." : answer.message;
    note.hidden = false;
    table.hidden = true;
    return;
  }
  const plans = Array.isArray(answer) ? answer : answer.plans || [];
  note.hidden = plans.length > 0;
  note.textContent = "No migration plans.";
  table.hidden = plans.length === 0;
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const plan of plans) {
    const c = plan.chargers || plan;
    const moved = count(c.moved);
    const pending = count(c.pending);
    const rolledBack = count(c.rolled_back);
    const bar = document.createElement("progress");
    bar.max = Math.max(1, moved + pending + rolledBack);
    bar.value = moved;
    const progress = document.createElement("td");
    progress.append(bar, el("span", ` ${moved}/${moved + pending + rolledBack}`));
    const tr = document.createElement("tr");
    tr.append(el("td", plan.name), el("td", plan.state), el("td", count(plan.waves)), el("td", moved),
      el("td", pending), el("td", rolledBack), progress);
    body.append(tr);
  }
}

function flow(message) {
  const gw = "gateway";
  return message.direction === "in" ? `${message.peer} → ${gw}` : `${gw} → ${message.peer}`;
}

function renderMessages(id, answer) {
  const section = $("charger");
  section.hidden = id === null;
  if (id === null) return;
  $("charger-id").textContent = id;
  const note = $("charger-note");
  const body = $("messages").tBodies[0];
  body.replaceChildren();
  if (answer instanceof Error) {
    note.textContent = answer instanceof NotAvailable ? `No charger ${id}.` : answer.message;
    note.hidden = false;
    return;
  }
  note.hidden = answer.length > 0;
  note.textContent = "No messages logged yet.";
  for (const message of answer.slice().reverse()) {
    // A CALLERROR's code and description are in the frame, not in its (usually empty) details.
    const payload = message.message_type === "CALLERROR" || message.payload === null
      ? String(message.frame ?? "") : JSON.stringify(message.payload);
    const cell = el("td", payload.length > PAYLOAD_CHARS ? payload.slice(0, PAYLOAD_CHARS) + "…" : payload, "payload");
    cell.title = payload;
    const tr = document.createElement("tr");
    tr.append(el("td", message.ts), el("td", flow(message)), el("td", message.message_type),
      el("td", message.action || ""), cell);
    body.append(tr);
  }
}

function showStatus(state, text) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = text;
}

function askForToken(message) {
  $("token-message").textContent = message;
  $("token-form").hidden = false;
  $("data").hidden = true;
  showStatus("token", "Waiting for the admin token.");
}

/** A promise's value, or the error it failed with (so one missing endpoint does not hide the others). */
function settle(promise) {
  return promise.catch((err) => err);
}

async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    const id = selectedCharger();
    const [chargers, migration, plans, messages] = await Promise.all([
      api("/api/chargers"),
      settle(api("/api/migration")),
      settle(api("/api/migration/plans")),
      id === null ? null : settle(api(`/api/chargers/${encodeURIComponent(id)}/messages?limit=${MESSAGES_SHOWN}`)),
    ]);
    for (const answer of [migration, plans, messages]) if (answer instanceof NeedsToken) throw answer;
    $("token-form").hidden = true;
    $("data").hidden = false;
    renderEstate(chargers, migration instanceof Error ? null : migration);
    renderPlans(plans);
    renderMessages(id, messages);
    showStatus("ok", "Updated " + new Date().toLocaleTimeString());
  } catch (err) {
    if (err instanceof NeedsToken) askForToken(err.message);
    else showStatus("error", "Cannot read the admin API: " + err.message);
  } finally {
    refreshing = false;
  }
}

function start() {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    $("token-input").value = "";
    refresh();
  });
  window.addEventListener("hashchange", refresh);
  refresh();
  setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", start);
