// tocsin's web UI: reads the JSON API and draws four panels (alerts, rules, targets, silences).
// Plain JavaScript, no framework, no build step; served by src/ui.rs under a CSP without inline
// script, so every element is built with the DOM API and every text goes in as a text node.
"use strict";

const TOKEN_KEY = "tocsin.apiToken";
const AUTHOR_KEY = "tocsin.author";
const SVG_NS = "http://www.w3.org/2000/svg";
/** how long one query_range answer is reused for a sparkline */
const SPARK_TTL_MS = 30000;
const SPARK_RANGE_S = 3600;
const SPARK_STEP_S = 60;

/** An endpoint this daemon does not serve (404): the panel says so instead of failing. */
class NotAvailable extends Error {}

const state = {
  alerts: [],
  silences: [],
  /** `group\0rule name` and `\0rule name` -> the rule's query */
  queries: new Map(),
  /** query -> {at, promise} */
  sparks: new Map(),
  refreshing: false,
  again: false,
};

// ---------------------------------------------------------------------------------------------
// small helpers

/** Creates an element: `attrs` sets attributes (`class`, `data-*`, …), children are nodes or text. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

async function getJSON(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  if (r.status === 404) throw new NotAvailable(path.split("?")[0]);
  const text = await r.text();
  let v = null;
  try {
    v = JSON.parse(text);
  } catch (_) {
    // not JSON: reported below
  }
  if (!r.ok || !v || v.status === "error") {
    throw new Error((v && v.error) || `${path.split("?")[0]} answered ${r.status} ${text}`.trim());
  }
  return v;
}

/** A time from the API (RFC 3339 text, unix seconds or ms) as ms since the epoch, or NaN. */
function toMs(t) {
  if (t === undefined || t === null || t === "") return NaN;
  if (typeof t === "number") return t > 1e11 ? t : t * 1000;
  if (/^\d+(\.\d+)?$/.test(t)) return toMs(Number(t));
  return Date.parse(t);
}

function ago(ms) {
  if (!Number.isFinite(ms) || ms <= 0) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ago`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h ago`;
}

function until(ms) {
  const s = Math.round((ms - Date.now()) / 1000);
  if (s <= 0) return ago(ms);
  if (s < 3600) return `in ${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `in ${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `in ${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** A time cell: relative text, the absolute time as its tooltip. */
function timeCell(t, rel = ago) {
  const ms = toMs(t);
  return h("td", { title: Number.isFinite(ms) ? new Date(ms).toISOString() : "" }, Number.isFinite(ms) ? rel(ms) : "–");
}

function quote(v) {
  return `"${String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`;
}

/** The stable text of a label set: `{a="1", b="2"}`, names sorted. */
function labelKey(labels) {
  return "{" + Object.keys(labels || {}).sort().map((k) => `${k}=${quote(labels[k])}`).join(", ") + "}";
}

function labelChips(labels, skip = []) {
  return h("span", { class: "labels" },
    Object.keys(labels || {}).sort().filter((k) => !skip.includes(k))
      .map((k) => h("span", { class: "label", "data-label": k }, `${k}=${labels[k]}`)));
}

function message(text, cls = "muted") {
  return h("p", { class: cls }, text);
}

function unavailable(err, what) {
  if (err instanceof NotAvailable) {
    return message(`not available: this daemon does not serve ${err.message} yet, so there are no ${what} to show`, "unavailable");
  }
  return message(`cannot load ${what}: ${err.message}`, "error");
}

/** Parses `1h30m`, `90s`, `2d` (Prometheus duration units) into ms; NaN when invalid. */
function parseDuration(text) {
  const units = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000, w: 604800000, y: 31536000000 };
  const t = String(text).trim();
  if (!/^(\d+(ms|s|m|h|d|w|y))+$/.test(t)) return NaN;
  let ms = 0;
  for (const [, n, u] of t.matchAll(/(\d+)(ms|s|m|h|d|w|y)/g)) ms += Number(n) * units[u];
  return ms > 0 ? ms : NaN;
}

/** Whether an Alertmanager-shaped matcher (`name`, `value`, `isRegex`, `isEqual`) matches. */
function matcherMatches(m, labels) {
  const v = labels[m.name] ?? "";
  let ok;
  if (m.isRegex) {
    try {
      ok = new RegExp(`^(?:${m.value})$`).test(v);
    } catch (_) {
      ok = false;
    }
  } else {
    ok = v === m.value;
  }
  return m.isEqual === false ? !ok : ok;
}

/** The active silences that match `labels`. */
function silencesOf(labels) {
  return state.silences.filter((s) => s.status && s.status.state === "active"
    && (s.matchers || []).length > 0 && s.matchers.every((m) => matcherMatches(m, labels)));
}

function matcherText(m) {
  const op = m.isRegex ? (m.isEqual === false ? "!~" : "=~") : (m.isEqual === false ? "!=" : "=");
  return `${m.name}${op}${quote(m.value)}`;
}

// ---------------------------------------------------------------------------------------------
// writes: bearer token asked once, kept in sessionStorage

let tokenWaiter = null;

function askToken(note) {
  const dialog = document.getElementById("token-dialog");
  const form = document.getElementById("token-form");
  form.reset();
  if (note) form.querySelector("p").textContent = note;
  dialog.showModal();
  return new Promise((resolve) => {
    tokenWaiter = resolve;
  });
}

function answerToken(token) {
  document.getElementById("token-dialog").close();
  const w = tokenWaiter;
  tokenWaiter = null;
  if (w) w(token);
}

/** A write to the API with the session's token; on 401 asks for a token and tries again. */
async function write(method, url, body) {
  for (let attempt = 0; ; attempt++) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status === 401 && attempt < 3) {
      sessionStorage.removeItem(TOKEN_KEY);
      const given = await askToken(token
        ? "The daemon refused that token. Enter the token of server.api_token_env."
        : "This daemon needs a bearer token for changes (server.api_token_env). It is kept in this tab only.");
      if (!given) throw new Error("an API token is needed for changes");
      sessionStorage.setItem(TOKEN_KEY, given);
      continue;
    }
    const text = await r.text();
    let v = null;
    try {
      v = JSON.parse(text);
    } catch (_) {
      // plain-text answer
    }
    if (!r.ok) throw new Error((v && v.error) || `${r.status} ${text}`.trim());
    return v;
  }
}

// ---------------------------------------------------------------------------------------------
// alerts

function alertQuery(a) {
  if (a.expr) return a.expr;
  const name = (a.labels || {}).alertname;
  return state.queries.get(`${a.group}\0${name}`) || state.queries.get(`\0${name}`) || null;
}

function renderAlerts(el, result) {
  if (result.status === "rejected") {
    el.replaceChildren(unavailable(result.reason, "alerts"));
    return;
  }
  const alerts = (result.value.data && result.value.data.alerts) || [];
  state.alerts = alerts;
  if (alerts.length === 0) {
    el.replaceChildren(message("nothing pending or firing", "muted empty"));
    return;
  }
  const rank = { firing: 0, pending: 1 };
  alerts.sort((x, y) => (rank[x.state] ?? 2) - (rank[y.state] ?? 2)
    || labelKey(x.labels).localeCompare(labelKey(y.labels)));
  const rows = alerts.map((a) => {
    const labels = a.labels || {};
    const silenced = silencesOf(labels);
    const spark = h("span", { class: "spark" }, "…");
    const button = h("button", { type: "button", class: "silence" }, silenced.length ? "Silence again" : "Silence");
    button.addEventListener("click", () => openSilence(labels));
    const annotations = Object.keys(a.annotations || {}).sort()
      .map((k) => h("div", { class: "annotation" }, h("b", {}, `${k}: `), a.annotations[k]));
    const row = h("tr", {
      class: `alert ${a.state}${silenced.length ? " is-silenced" : ""}`,
      "data-key": labelKey(labels),
      "data-state": a.state,
    },
    h("td", {},
      h("span", { class: `badge ${a.state}` }, a.state),
      silenced.length ? h("span", { class: "badge silenced", title: silenced.map((s) => `silence ${s.id} by ${s.createdBy}: ${s.comment}`).join("\n"), "data-silence": silenced.map((s) => s.id).join(" ") }, "silenced") : null,
      a.flapping ? h("span", { class: "badge flapping" }, "flapping") : null),
    h("td", { class: "name" }, labels.alertname || "", h("div", { class: "muted small" }, a.group || "")),
    timeCell(a.firedAt || a.activeAt),
    h("td", {}, labelChips(labels, ["alertname"])),
    h("td", {}, annotations),
    h("td", { class: "value" }, a.value ?? ""),
    h("td", {}, spark),
    h("td", {}, button));
    drawSpark(spark, a);
    return row;
  });
  el.replaceChildren(h("table", {},
    h("thead", {}, h("tr", {}, ["State", "Alert", "Since", "Labels", "Annotations", "Value", "Last hour", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows)));
}

function rangeOf(query) {
  const now = Date.now();
  const cached = state.sparks.get(query);
  if (cached && now - cached.at < SPARK_TTL_MS) return cached.promise;
  const end = Math.floor(now / 1000);
  const params = new URLSearchParams({ query, start: String(end - SPARK_RANGE_S), end: String(end), step: String(SPARK_STEP_S) });
  const promise = getJSON(`/api/v1/query_range?${params}`).then((v) => ({ start: end - SPARK_RANGE_S, end, result: (v.data && v.data.result) || [] }));
  state.sparks.set(query, { at: now, promise });
  return promise;
}

/** Draws the alert's expression over the last hour as an inline SVG line into `el`. */
async function drawSpark(el, alert) {
  const query = alertQuery(alert);
  if (!query) {
    el.replaceChildren(h("span", { class: "muted small", title: "the rule's expression is unknown: /api/v1/rules is not available" }, "no expression"));
    return;
  }
  try {
    const { start, end, result } = await rangeOf(query);
    const labels = alert.labels || {};
    const series = result.find((s) => Object.entries(s.metric || {}).every(([k, v]) => k === "__name__" || labels[k] === v)) || result[0];
    if (!series || !(series.values || []).length) {
      el.replaceChildren(h("span", { class: "muted small", title: query }, "no data"));
      return;
    }
    const points = series.values.map(([t, v]) => [Number(t), Number(v)]).filter(([, v]) => Number.isFinite(v));
    const W = 120;
    const H = 28;
    const values = points.map(([, v]) => v);
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const x = (t) => ((t - start) / (end - start)) * W;
    const y = (v) => (hi === lo ? H / 2 : H - 2 - ((v - lo) / (hi - lo)) * (H - 4));
    const s = svg("svg", { class: "sparkline", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" });
    const title = svg("title");
    title.textContent = `${query}\nlast hour: min ${lo}, max ${hi}, last ${values[values.length - 1]}`;
    s.append(title);
    // one polyline per run of consecutive steps: a gap in the data stays a gap
    let run = [];
    const flush = () => {
      if (run.length === 1) s.append(svg("circle", { cx: run[0][0], cy: run[0][1], r: 1.5 }));
      else if (run.length > 1) s.append(svg("polyline", { points: run.map((p) => p.join(",")).join(" ") }));
      run = [];
    };
    let prev = null;
    for (const [t, v] of points) {
      if (prev !== null && t - prev > SPARK_STEP_S * 1.5) flush();
      run.push([x(t).toFixed(1), y(v).toFixed(1)]);
      prev = t;
    }
    flush();
    el.replaceChildren(s);
  } catch (err) {
    state.sparks.delete(query);
    el.replaceChildren(h("span", { class: "muted small", title: err.message }, err instanceof NotAvailable ? "not available" : "error"));
  }
}

// ---------------------------------------------------------------------------------------------
// rules

function evaluationStrip(evals) {
  return h("span", { class: "evals" }, evals.map((e) => {
    const n = Array.isArray(e.results) ? e.results.length : Number(e.results || 0);
    const cls = e.error ? "ev ev-error" : n > 0 ? "ev ev-hit" : "ev ev-empty";
    return h("span", { class: cls, title: `${new Date(toMs(e.t)).toISOString()}: ${e.error || `${n} result${n === 1 ? "" : "s"}`}` });
  }));
}

function evaluationTable(evals) {
  return h("table", { class: "inner" },
    h("thead", {}, h("tr", {}, ["Time", "Duration", "Results", "Error"].map((t) => h("th", {}, t)))),
    h("tbody", {}, [...evals].reverse().map((e) => {
      const n = Array.isArray(e.results) ? e.results.length : e.results;
      return h("tr", {},
        timeCell(e.t),
        h("td", {}, (e.duration ?? e.duration_s) === undefined ? "" : `${(Number(e.duration ?? e.duration_s) * 1000).toFixed(1)} ms`),
        h("td", {}, n ?? ""),
        h("td", { class: "error" }, e.error || ""));
    })));
}

function renderRules(el, result) {
  state.queries.clear();
  // evaluations an operator opened stay open across refreshes
  const open = new Set([...el.querySelectorAll("tr.rule details[open]")].map((d) => d.closest("tr").dataset.key));
  if (result.status === "rejected") {
    el.replaceChildren(unavailable(result.reason, "rules"));
    return;
  }
  const groups = (result.value.data && result.value.data.groups) || [];
  if (groups.length === 0) {
    el.replaceChildren(message("no rules loaded", "muted empty"));
    return;
  }
  el.replaceChildren(...groups.map((g) => {
    const rows = (g.rules || []).map((r) => {
      state.queries.set(`${g.name}\0${r.name}`, r.query);
      if (!state.queries.has(`\0${r.name}`)) state.queries.set(`\0${r.name}`, r.query);
      const evals = r.evaluations || [];
      const firing = (r.alerts || []).length;
      const why = r.type !== "recording" && (r.state === "inactive" || r.state === undefined)
        ? "why not firing: the last evaluations" : "the last evaluations";
      const key = `${g.name}\0${r.name}\0${r.query}`;
      return h("tr", { class: `rule ${r.health || ""}`, "data-rule": r.name, "data-key": key },
        h("td", { class: "name" }, r.name, h("div", { class: "muted small" }, r.type || "")),
        h("td", {}, r.state ? h("span", { class: `badge ${r.state}` }, r.state) : "", firing ? h("span", { class: "muted small" }, ` ${firing} alert${firing === 1 ? "" : "s"}`) : null),
        h("td", {}, h("span", { class: `badge ${r.health || "unknown"}` }, r.health || "unknown")),
        timeCell(r.lastEvaluation),
        h("td", { class: "error" }, r.lastError || ""),
        h("td", {}, h("code", { class: "query" }, r.query || "")),
        h("td", {}, evals.length
          ? h("details", { open: open.has(key) }, h("summary", {}, evaluationStrip(evals), " ", why), evaluationTable(evals))
          : h("span", { class: "muted small" }, "none kept")));
    });
    return h("div", { class: "group" },
      h("h3", {}, g.name, g.file ? h("span", { class: "muted small" }, ` ${g.file}`) : null),
      h("table", {},
        h("thead", {}, h("tr", {}, ["Rule", "State", "Health", "Last evaluation", "Error", "Query", "Evaluations"].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows)));
  }));
}

// ---------------------------------------------------------------------------------------------
// targets

function renderTargets(el, result) {
  if (result.status === "rejected") {
    el.replaceChildren(unavailable(result.reason, "targets"));
    return;
  }
  const targets = (result.value.data && result.value.data.activeTargets) || [];
  if (targets.length === 0) {
    el.replaceChildren(message("no targets", "muted empty"));
    return;
  }
  targets.sort((x, y) => (x.health === "down" ? 0 : 1) - (y.health === "down" ? 0 : 1)
    || String(x.scrapeUrl).localeCompare(String(y.scrapeUrl)));
  el.replaceChildren(h("table", {},
    h("thead", {}, h("tr", {}, ["Health", "Endpoint", "Labels", "Last scrape", "Error"].map((t) => h("th", {}, t)))),
    h("tbody", {}, targets.map((t) => h("tr", { class: `target ${t.health || ""}`, "data-url": t.scrapeUrl || "" },
      h("td", {}, h("span", { class: `badge ${t.health || "unknown"}` }, t.health || "unknown")),
      h("td", {}, h("code", {}, t.scrapeUrl || "")),
      h("td", {}, labelChips(t.labels)),
      timeCell(t.lastScrape),
      h("td", { class: "error" }, t.lastError || ""))))));
}

// ---------------------------------------------------------------------------------------------
// notifications: what was delivered, failed, or only recorded (shadow mode)

function renderNotifications(el, result) {
  if (result.status === "rejected") {
    el.replaceChildren(unavailable(result.reason, "notifications"));
    return;
  }
  const rows = result.value.data || [];
  if (rows.length === 0) {
    el.replaceChildren(message("no notifications yet", "muted empty"));
    return;
  }
  el.replaceChildren(h("table", {},
    h("thead", {}, h("tr", {}, ["When", "Status", "Integration", "Subject", "Alerts", "Error"].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((n) => h("tr", { class: `notification ${n.status || ""}` },
      timeCell(n.at),
      h("td", {}, h("span", { class: `badge ${n.status || ""}`, title: n.status === "shadow"
        ? "shadow mode: routed and recorded, not sent" : "" }, n.status || "")),
      h("td", {}, h("code", {}, n.integration || "")),
      h("td", {}, n.subject || ""),
      h("td", {}, String((n.alerts || []).length)),
      h("td", { class: "error" }, n.error || ""))))));
}

// ---------------------------------------------------------------------------------------------
// silences

function renderSilences(el, result) {
  if (result.status === "rejected") {
    el.replaceChildren(unavailable(result.reason, "silences"));
    return;
  }
  const list = result.value.data || [];
  state.silences = list;
  if (list.length === 0) {
    el.replaceChildren(message("no silences", "muted empty"));
    return;
  }
  const rank = { active: 0, pending: 1, expired: 2 };
  list.sort((x, y) => (rank[x.status && x.status.state] ?? 3) - (rank[y.status && y.status.state] ?? 3)
    || toMs(y.endsAt) - toMs(x.endsAt));
  el.replaceChildren(h("table", {},
    h("thead", {}, h("tr", {}, ["State", "Matchers", "Starts", "Ends", "Created by", "Comment", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, list.map((s) => {
      const st = (s.status && s.status.state) || "";
      let button = null;
      if (st !== "expired") {
        button = h("button", { type: "button", class: "expire" }, "Expire");
        button.addEventListener("click", async () => {
          button.disabled = true;
          try {
            await write("DELETE", `/api/v1/silences/${encodeURIComponent(s.id)}`);
            await refresh();
          } catch (err) {
            button.disabled = false;
            button.title = err.message;
            button.textContent = "Expire (failed)";
          }
        });
      }
      return h("tr", { class: `silence ${st}`, "data-id": s.id },
        h("td", {}, h("span", { class: `badge ${st}` }, st)),
        h("td", {}, (s.matchers || []).map((m) => h("code", { class: "matcher" }, matcherText(m)))),
        timeCell(s.startsAt),
        timeCell(s.endsAt, until),
        h("td", {}, s.createdBy || ""),
        h("td", {}, s.comment || ""),
        h("td", {}, button));
    }))));
}

function openSilence(labels) {
  const dialog = document.getElementById("silence-dialog");
  const form = document.getElementById("silence-form");
  form.reset();
  document.getElementById("silence-error").textContent = "";
  form.elements.matchers.value = Object.keys(labels || {}).sort().map((k) => `${k}=${quote(labels[k])}`).join("\n");
  form.elements.author.value = localStorage.getItem(AUTHOR_KEY) || "";
  dialog.showModal();
  (form.elements.author.value ? form.elements.comment : form.elements.author).focus();
}

async function submitSilence(ev) {
  ev.preventDefault();
  const form = ev.target;
  const error = document.getElementById("silence-error");
  const submit = document.getElementById("silence-submit");
  const ms = parseDuration(form.elements.duration.value);
  if (!Number.isFinite(ms)) {
    error.textContent = "duration: a number with a unit, like 30m, 2h or 1d";
    return;
  }
  const matchers = form.elements.matchers.value.split("\n").map((l) => l.trim()).filter(Boolean);
  const body = {
    matchers,
    startsAt: new Date().toISOString(),
    endsAt: new Date(Date.now() + ms).toISOString(),
    createdBy: form.elements.author.value.trim(),
    comment: form.elements.comment.value.trim(),
  };
  submit.disabled = true;
  error.textContent = "";
  try {
    await write("POST", "/api/v1/silences", body);
    localStorage.setItem(AUTHOR_KEY, body.createdBy);
    document.getElementById("silence-dialog").close();
    await refresh();
  } catch (err) {
    error.textContent = err.message;
  } finally {
    submit.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// page

async function refresh() {
  if (state.refreshing) {
    // one more round after the current one, which may have read the API before a change
    state.again = true;
    return;
  }
  state.refreshing = true;
  state.again = false;
  try {
    const [alerts, silences, rules, targets, notifications] = await Promise.allSettled([
      getJSON("/api/v1/alerts"),
      getJSON("/api/v1/silences"),
      getJSON("/api/v1/rules"),
      getJSON("/api/v1/targets"),
      getJSON("/api/v1/notifications?limit=100"),
    ]);
    // silences and rules first: the alert rows read them (silenced, sparkline query)
    renderSilences(document.getElementById("silences-body"), silences);
    renderRules(document.getElementById("rules-body"), rules);
    renderTargets(document.getElementById("targets-body"), targets);
    renderNotifications(document.getElementById("notifications-body"), notifications);
    renderAlerts(document.getElementById("alerts-body"), alerts);
    const updated = document.getElementById("updated");
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
    updated.dataset.at = String(Date.now());
  } finally {
    state.refreshing = false;
  }
  if (state.again) await refresh();
}

function showTab() {
  const want = (location.hash || "#alerts").slice(1);
  const tabs = ["alerts", "rules", "targets", "silences", "notifications"];
  const tab = tabs.includes(want) ? want : "alerts";
  for (const t of tabs) {
    document.getElementById(t).hidden = t !== tab;
    document.querySelector(`nav a[data-tab="${t}"]`).classList.toggle("active", t === tab);
  }
}

function start() {
  document.getElementById("silence-form").addEventListener("submit", submitSilence);
  document.getElementById("silence-cancel").addEventListener("click", () => document.getElementById("silence-dialog").close());
  document.getElementById("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    answerToken(ev.target.elements.token.value.trim() || null);
  });
  document.getElementById("token-cancel").addEventListener("click", () => answerToken(null));
  document.getElementById("token-dialog").addEventListener("cancel", () => answerToken(null));
  document.getElementById("refresh").addEventListener("click", () => refresh());
  document.getElementById("new-silence").addEventListener("click", () => openSilence({}));
  window.addEventListener("hashchange", showTab);
  showTab();
  // `?refresh=N`: seconds between refreshes (default 5)
  const every = Number(new URLSearchParams(location.search).get("refresh")) || 5;
  refresh();
  setInterval(refresh, Math.max(1, every) * 1000);
}

start();
