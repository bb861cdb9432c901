// tocsin's web UI: reads the JSON API and draws five panels (alerts, rules, targets, silences,
// notifications). Every absolute time is printed by `stamp`/`clock`: 24-hour, with the browser's
// time zone named.
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
/** sparkline size (px) and inner margin, so a point's mark is never cut at the edge */
const SPARK_W = 120;
const SPARK_H = 28;
const SPARK_PAD = 3;
/** up to this many points every point gets a mark; above it, only the last one */
const SPARK_MARKS = 12;
/** how many state changes a rule's timeline lists (the API keeps the last 100) */
const TIMELINE_ROWS = 50;

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
  /** rule groups loaded at the last refresh (null: unknown) */
  ruleGroups: null,
  /** `/api/v1/status`'s data at the last refresh (null: not available) */
  status: null,
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

// 24-hour times with the zone: the browser's zone, named as the browser names it (`UTC`, `CET`,
// `GMT+5:30`); one formatter for the whole page so every time reads alike
const CLOCK = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "short",
});
const DAY = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "2-digit", day: "2-digit" });

function parts(fmt, ms) {
  const out = {};
  for (const p of fmt.formatToParts(new Date(ms))) out[p.type] = p.value;
  return out;
}

/** `2026-12-06` in the browser's zone. */
function day(ms) {
  const p = parts(DAY, ms);
  return `${p.year}-${p.month}-${p.day}`;
}

/** `14:03:07 UTC`: the time of day, 24-hour, with the zone. */
function clock(ms) {
  const p = parts(CLOCK, ms);
  // some engines write midnight as 24 even with h23
  const hour = p.hour === "24" ? "00" : p.hour;
  return `${hour}:${p.minute}:${p.second} ${p.timeZoneName}`;
}

/** `14:03:07 UTC` today, `2026-12-05 14:03:07 UTC` on another day. */
function stamp(ms, full = false) {
  return full || day(ms) !== day(Date.now()) ? `${day(ms)} ${clock(ms)}` : clock(ms);
}

/** A `<time>` element of `ms` in the page's one format, the full date as its tooltip. */
function timeEl(ms, cls = "at") {
  return h("time", { class: cls, datetime: new Date(ms).toISOString(), title: stamp(ms, true) }, stamp(ms));
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

/** A time cell: relative text, and the absolute time (24-hour, with the zone) under it. */
function timeCell(t, rel = ago) {
  const ms = toMs(t);
  // the API writes "never" as year 1 (Prometheus's zero time)
  if (!Number.isFinite(ms)) return h("td", { class: "when" }, "–");
  if (ms <= 0) return h("td", { class: "when" }, rel === ago ? "never" : "–");
  return h("td", { class: "when" }, rel(ms), h("div", { class: "muted small" }, timeEl(ms)));
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
    // the first screen of a daemon without rules says where rules come from
    el.replaceChildren(state.ruleGroups === 0 ? noRules() : message("nothing pending or firing", "muted empty"));
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

/** A number for a sparkline's label: at most 3 significant digits, large ones compact (`12.3K`). */
function num(v) {
  if (!Number.isFinite(v)) return String(v);
  return new Intl.NumberFormat("en", {
    maximumSignificantDigits: 3,
    notation: Math.abs(v) >= 1e4 ? "compact" : "standard",
  }).format(v);
}

/** `45s`, `4m`, `1h`, `1h 5m`: a span of seconds. */
function span(s) {
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.round(s / 60)}m`;
  const m = Math.round((s % 3600) / 60);
  return `${Math.floor(s / 3600)}h${m ? ` ${m}m` : ""}`;
}

/**
 * Draws the alert's expression as an inline SVG line into `el`, with a label of its value range
 * and the time it covers. The line spans the time the series has points for (a series that began
 * four minutes ago fills the width, not the hour's last pixels); up to SPARK_MARKS points each
 * get a mark, a flat series is a level line in the middle, a single point a mark.
 */
async function drawSpark(el, alert) {
  const query = alertQuery(alert);
  if (!query) {
    el.replaceChildren(h("span", { class: "muted small", title: "the rule's expression is unknown: /api/v1/rules is not available" }, "no expression"));
    return;
  }
  try {
    const { result } = await rangeOf(query);
    const labels = alert.labels || {};
    const series = result.find((s) => Object.entries(s.metric || {}).every(([k, v]) => k === "__name__" || labels[k] === v)) || result[0];
    const points = ((series && series.values) || []).map(([t, v]) => [Number(t), Number(v)])
      .filter(([t, v]) => Number.isFinite(t) && Number.isFinite(v));
    if (points.length === 0) {
      el.replaceChildren(h("span", { class: "muted small", title: query }, "no data"));
      return;
    }
    const values = points.map(([, v]) => v);
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const first = points[0][0];
    const lastT = points[points.length - 1][0];
    const covered = lastT - first;
    const inner = SPARK_W - 2 * SPARK_PAD;
    const x = (t) => (covered > 0 ? SPARK_PAD + ((t - first) / covered) * inner : SPARK_W / 2);
    const y = (v) => (hi === lo ? SPARK_H / 2 : SPARK_PAD + ((hi - v) / (hi - lo)) * (SPARK_H - 2 * SPARK_PAD));
    const s = svg("svg", { class: "sparkline", width: SPARK_W, height: SPARK_H, viewBox: `0 0 ${SPARK_W} ${SPARK_H}`, role: "img" });
    const last = values[values.length - 1];
    const overWhat = points.length === 1 ? `1 point at ${stamp(first * 1000)}`
      : `${stamp(first * 1000)} to ${stamp(lastT * 1000)}`;
    const title = svg("title");
    title.textContent = `${query}\n${overWhat}: min ${lo}, max ${hi}, last ${last}`;
    s.append(title);
    // one polyline per run of consecutive steps: a gap in the data stays a gap
    const marks = points.length <= SPARK_MARKS;
    let run = [];
    const flush = () => {
      if (run.length === 1 && !marks) s.append(svg("circle", { class: "lone", cx: run[0][0], cy: run[0][1], r: 1.5 }));
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
    points.forEach(([t, v], i) => {
      if (marks || i === points.length - 1) {
        s.append(svg("circle", { class: marks ? "point" : "last", cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2 }));
      }
    });
    const range = points.length === 1 ? num(lo) : hi === lo ? `${num(lo)} flat` : `${num(lo)}–${num(hi)}`;
    const when = points.length === 1 ? "1 point" : `over ${span(covered)}`;
    el.replaceChildren(s, h("span", { class: "spark-label muted small", "data-min": lo, "data-max": hi }, `${range} · ${when}`));
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
    return h("span", { class: cls, title: `${stamp(toMs(e.t), true)}: ${e.error || `${n} result${n === 1 ? "" : "s"}`}` });
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

/** What a change of an alert's state is called: `resolved` for firing → inactive. */
function changeName(t) {
  if (t.to === "inactive") return t.from === "firing" ? "resolved" : "inactive";
  return t.to;
}

/**
 * A rule's state changes (from `transitions` in `/api/v1/rules`, newest first, at most 100 kept
 * by the store): the last one as the summary, then up to TIMELINE_ROWS, oldest at the top, each
 * with its time, from → to, and the alert's labels.
 */
function timeline(transitions, open) {
  if (transitions.length === 0) return h("span", { class: "muted small" }, "no state change recorded");
  const latest = transitions[0];
  const rows = transitions.slice(0, TIMELINE_ROWS).reverse();
  const more = transitions.length - rows.length;
  return h("details", { class: "timeline", open },
    h("summary", {}, h("span", { class: `badge ${changeName(latest)}` }, changeName(latest)), " ", timeEl(toMs(latest.t)),
      h("span", { class: "muted small" }, ` · ${transitions.length} change${transitions.length === 1 ? "" : "s"}`)),
    h("ol", { class: "changes" },
      more > 0 ? h("li", { class: "muted small" }, `${more} older not shown`) : null,
      rows.map((t) => h("li", { class: "change", "data-to": changeName(t) },
        timeEl(toMs(t.t)), " ",
        h("span", { class: "muted small" }, `${t.from} → `),
        h("span", { class: `badge ${changeName(t)}` }, changeName(t)),
        t.flapping === true ? h("span", { class: "badge flapping" }, "flapping") : null,
        h("code", { class: "alert-labels" }, withoutAlertname(t.labels || ""))))));
}

/** An alert's label text (`{alertname="X", a="b"}`) without its alertname, which the row names. */
function withoutAlertname(text) {
  return text.replace(/alertname="(?:[^"\\]|\\.)*"(, )?/, "").replace(/^\{\}$/, "");
}

/**
 * Names each body cell of the page's tables after its column (`data-th`), so that on a narrow
 * screen, where the stylesheet stacks a row's cells, each cell still says what it is.
 */
function labelCells(root) {
  for (const table of root.querySelectorAll("table")) {
    const heads = [...table.querySelectorAll(":scope > thead > tr > th")].map((th) => th.textContent);
    for (const tr of table.querySelectorAll(":scope > tbody > tr")) {
      [...tr.children].forEach((td, i) => {
        td.dataset.th = heads[i] || "";
      });
    }
  }
}

/** The empty first screen: no rules are loaded; where they come from and how to check them. */
function noRules() {
  const files = (state.status && state.status.ruleFiles) || null;
  const where = files === null
    ? [h("p", {}, "Rules come from the rule files tocsin.yml lists in ", h("code", {}, "rule_files"), ".")]
    : files.length === 0
      ? [h("p", {}, "tocsin.yml has no ", h("code", {}, "rule_files"), ". Add the rule files to load, relative to tocsin.yml, for example:"),
        h("pre", {}, "rule_files: [tocsin:self, rules/*.yml]")]
      : [h("p", {}, "tocsin.yml's ", h("code", {}, "rule_files"), " are ",
        files.map((f, i) => [i ? ", " : "", h("code", { class: "rule-file" }, f)]),
        ", and they hold no rule group.")];
  return h("div", { class: "no-rules empty" },
    h("p", { class: "name" }, "No rules loaded, so nothing can fire."),
    where,
    h("p", {}, "Put Prometheus-format rule files in a ", h("code", {}, "rules/"), " directory next to tocsin.yml, check them with ",
      h("code", {}, "tocsin check tocsin.yml rules/"), " (every error with file:line:col), then reload: ",
      h("code", {}, "kill -HUP"), ", ", h("code", {}, "POST /-/reload"), ", or save a watched file."),
    h("p", { class: "muted" }, "The rule file format: ",
      h("a", { href: "/ui/docs/rules", class: "doc-link" }, "Rules and alerts"),
      " (README.md, served by this daemon); every configuration field: ", h("code", {}, "tocsin config-reference"), "."));
}

function renderRules(el, result) {
  state.queries.clear();
  // evaluations an operator opened stay open across refreshes
  const open = new Set([...el.querySelectorAll("tr.rule details.evaluations[open]")].map((d) => d.closest("tr").dataset.key));
  const openTimelines = new Set([...el.querySelectorAll("tr.rule details.timeline[open]")].map((d) => d.closest("tr").dataset.key));
  if (result.status === "rejected") {
    el.replaceChildren(unavailable(result.reason, "rules"));
    return;
  }
  const groups = (result.value.data && result.value.data.groups) || [];
  state.ruleGroups = groups.length;
  if (groups.length === 0) {
    el.replaceChildren(noRules());
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
          ? h("details", { class: "evaluations", open: open.has(key) }, h("summary", {}, evaluationStrip(evals), " ", why), evaluationTable(evals))
          : h("span", { class: "muted small" }, "none kept")),
        h("td", { class: "timeline-cell" }, r.type === "recording" ? h("span", { class: "muted small" }, "–")
          : timeline(r.transitions || [], openTimelines.has(key))));
    });
    return h("div", { class: "group" },
      h("h3", {}, g.name, g.file ? h("span", { class: "muted small" }, ` ${g.file}`) : null),
      h("table", {},
        h("thead", {}, h("tr", {}, ["Rule", "State", "Health", "Last evaluation", "Error", "Query", "Evaluations", "State changes"].map((t) => h("th", {}, t)))),
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
  // a health endpoint that answered reporting a partial failure is degraded, not down
  const shown = (t) => (t.degraded ? "degraded" : t.health || "unknown");
  const rank = { down: 0, degraded: 1 };
  targets.sort((x, y) => (rank[shown(x)] ?? 2) - (rank[shown(y)] ?? 2)
    || String(x.scrapeUrl).localeCompare(String(y.scrapeUrl)));
  el.replaceChildren(h("table", {},
    h("thead", {}, h("tr", {}, ["Health", "Endpoint", "Labels", "Last scrape", "Error"].map((t) => h("th", {}, t)))),
    h("tbody", {}, targets.map((t) => h("tr", { class: `target ${shown(t)}`, "data-url": t.scrapeUrl || "", "data-kind": t.kind || "" },
      h("td", {}, h("span", { class: `badge ${shown(t)}`, title: t.degraded ? "answered, with some of its checks failing" : "" }, shown(t))),
      h("td", {}, h("code", {}, t.scrapeUrl || ""), t.kind ? h("div", { class: "muted small" }, t.kind) : null),
      h("td", {}, labelChips(t.labels)),
      timeCell(t.lastScrape),
      h("td", {}, (t.checks || []).length
        ? h("span", { class: "checks" }, t.checks.map((c) => h("span", { class: `check ${c.ok ? "ok" : "failing"}`, "data-check": c.name },
          `${c.name}: ${c.text}`)))
        : null,
      h("div", { class: "error" }, t.lastError || "")))))));
}

// ---------------------------------------------------------------------------------------------
// notifications: what was delivered, failed, or only recorded (shadow mode)

function renderNotifications(el, result) {
  if (result.status === "rejected") {
    el.replaceChildren(unavailable(result.reason, "notifications"));
    return;
  }
  const rows = result.value.data || [];
  // without a route nothing is ever sent: say so rather than "not yet"
  const off = state.status && state.status.notifications && state.status.notifications.enabled === false
    ? h("div", { class: "notifications-off empty" },
      h("p", { class: "name" }, "Notifications are off."),
      h("p", {}, "tocsin.yml has no ", h("code", {}, "route"), ": alerts are evaluated and shown here, but none is sent. Add a ",
        h("code", {}, "route"), " and its ", h("code", {}, "receivers"), " to tocsin.yml (",
        h("code", {}, "tocsin route-test"), " shows where an alert would go) and restart."))
    : null;
  if (rows.length === 0) {
    el.replaceChildren(off || message("no notifications yet", "muted empty"));
    return;
  }
  el.replaceChildren(off || "", h("table", {},
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
    const [alerts, silences, rules, targets, notifications, status] = await Promise.allSettled([
      getJSON("/api/v1/alerts"),
      getJSON("/api/v1/silences"),
      getJSON("/api/v1/rules"),
      getJSON("/api/v1/targets"),
      getJSON("/api/v1/notifications?limit=100"),
      getJSON("/api/v1/status"),
    ]);
    // rule files and whether notifications are on (null when the daemon does not say)
    state.status = status.status === "fulfilled" ? status.value.data || null : null;
    // silences and rules first: the alert rows read them (silenced, sparkline query)
    renderSilences(document.getElementById("silences-body"), silences);
    renderRules(document.getElementById("rules-body"), rules);
    renderTargets(document.getElementById("targets-body"), targets);
    renderNotifications(document.getElementById("notifications-body"), notifications);
    renderAlerts(document.getElementById("alerts-body"), alerts);
    labelCells(document.querySelector("main"));
    const updated = document.getElementById("updated");
    updated.replaceChildren("updated ", timeEl(Date.now()));
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
