// rpa-ml ops page: polls the JSON API and renders it. No dependencies.
// The API key is typed by the operator and kept in sessionStorage for this
// tab only; it is sent as X-API-Key. Without a configured key the calls
// succeed as they are and no prompt is shown.
"use strict";

const KEY_STORE = "rpa-ml-api-key";
const POLL_MS = 3000;

function apiKey() { return sessionStorage.getItem(KEY_STORE) || ""; }

class AuthError extends Error {}

async function api(path, options = {}) {
  const headers = Object.assign({ "Accept": "application/json" }, options.headers || {});
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  const res = await fetch(path, Object.assign({}, options, { headers }));
  let body = null;
  try { body = await res.json(); } catch (_) { body = null; }
  if (res.status === 401) throw new AuthError(body && body.error ? body.error.message : "unauthorized");
  return { status: res.status, body };
}

// Builds an element; strings become text nodes (never HTML).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function table(headers, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map(h => el("th", { class: h.num ? "num" : null }, h.label || h)))),
    el("tbody", {}, rows));
}

function num(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return typeof v === "number" && digits !== undefined ? v.toFixed(digits) : String(v);
}

function ago(iso) {
  if (!iso) return "–";
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (s < 60) return `${Math.max(0, Math.round(s))} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function secs(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function replace(id, ...content) {
  const node = document.getElementById(id);
  node.className = "";
  node.replaceChildren(...content);
}

function stateBadge(s) { return el("span", { class: `state state-${s}` }, s); }

// ---- sections ---------------------------------------------------------

function renderQueues(data) {
  const rows = data.queues.map(q => {
    const t = q.transport || {};
    const transport = q.transport_error
      ? el("span", { class: "error" }, q.transport_error)
      : Object.entries(t).map(([k, v]) => `${k} ${v}`).join(", ");
    return el("tr", { "data-queue": q.queue },
      el("td", {}, q.queue),
      el("td", { class: "num" }, q.waiting),
      el("td", { class: "num" }, q.scheduled),
      el("td", { class: "num" }, q.running),
      el("td", { class: "num" }, q.failed),
      el("td", { class: "num" }, q.dead),
      el("td", { class: "num" }, secs(q.oldest_waiting_age_s)),
      el("td", { class: "num" }, q.throughput.finished_5m),
      el("td", { class: "num" }, q.throughput.finished_1h),
      el("td", { class: "muted" }, transport));
  });
  replace("queues",
    el("p", { class: "muted" }, `queue: ${data.queue_backend}, store: ${data.store_backend}`),
    table(["queue", { label: "waiting", num: 1 }, { label: "scheduled", num: 1 }, { label: "running", num: 1 },
      { label: "failed", num: 1 }, { label: "dead", num: 1 }, { label: "oldest waiting", num: 1 },
      { label: "done 5 min", num: 1 }, { label: "done 1 h", num: 1 }, "transport"], rows));
}

function renderCallbacks(data) {
  const c = data.callbacks || {};
  replace("callbacks",
    table([{ label: "pending", num: 1 }, { label: "delivered", num: 1 }, { label: "failed", num: 1 }],
      [el("tr", {},
        el("td", { class: "num", "data-callbacks": "pending" }, c.pending),
        el("td", { class: "num", "data-callbacks": "delivered" }, c.delivered),
        el("td", { class: c.failed ? "num error" : "num", "data-callbacks": "failed" }, c.failed))]));
}

async function retryJob(id, button) {
  button.disabled = true;
  button.textContent = "retrying…";
  try {
    const { status, body } = await api(`/api/v1/jobs/${encodeURIComponent(id)}/retry`, { method: "POST" });
    button.textContent = status === 202 ? "queued again" : (body && body.error ? body.error.message : `HTTP ${status}`);
  } catch (e) {
    button.textContent = e.message;
  }
  refresh();
}

async function cancelJob(id, button) {
  button.disabled = true;
  try {
    const { status, body } = await api(`/api/v1/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST" });
    button.textContent = status === 200 ? "cancelled" : status === 202 ? "stopping…" : (body && body.error ? body.error.message : `HTTP ${status}`);
  } catch (e) {
    button.textContent = e.message;
  }
  refresh();
}

function jobRow(j, actions) {
  const action = [];
  if (actions && (j.status === "failed" || j.status === "dead")) {
    action.push(el("button", { type: "button", class: "retry", "data-retry": j.job_id,
      onclick: ev => retryJob(j.job_id, ev.currentTarget) }, "Retry"));
  }
  if (actions && (j.status === "queued" || j.status === "running") && !j.cancel_requested_at) {
    action.push(el("button", { type: "button", class: "cancel", "data-cancel": j.job_id,
      onclick: ev => cancelJob(j.job_id, ev.currentTarget) }, "Cancel"));
  }
  const err = j.error || (j.previous_error ? `before retry: ${j.previous_error}` : "");
  return el("tr", { "data-job": j.job_id },
    el("td", {}, el("code", {}, j.job_id)),
    el("td", {}, j.kind),
    el("td", {}, stateBadge(j.status), j.cancel_requested_at && j.status === "running" ? " (cancel requested)" : ""),
    el("td", { class: "num" }, `${j.attempts}/${j.max_attempts}`),
    el("td", { class: "num" }, j.retries),
    el("td", {}, j.stage || ""),
    el("td", { title: j.created_at }, ago(j.created_at)),
    el("td", { class: "error job-error" }, err),
    el("td", {}, action));
}

const JOB_HEADERS = ["job", "kind", "state", { label: "attempts", num: 1 }, { label: "retries", num: 1 },
  "stage", "created", "error", ""];

function renderJobs(id, data, empty) {
  if (!data.jobs.length) { replace(id, el("p", { class: "muted" }, empty)); return; }
  replace(id, table(JOB_HEADERS, data.jobs.map(j => jobRow(j, true))));
}

function renderWorkers(data) {
  if (!data.workers.length) { replace("workers", el("p", { class: "muted" }, "no worker has registered yet")); return; }
  const rows = data.workers.map(w => el("tr", {},
    el("td", {}, el("code", {}, w.name)),
    el("td", {}, w.alive ? el("span", { class: "ok" }, "alive") : el("span", { class: "muted" }, w.stopped_at ? "stopped" : "silent")),
    el("td", {}, `${w.host} / ${w.pid}`),
    el("td", {}, w.queues.join(", ")),
    el("td", { class: "num" }, w.concurrency),
    el("td", {}, w.version),
    el("td", { title: w.started_at }, ago(w.started_at)),
    el("td", { title: w.last_seen }, ago(w.last_seen))));
  replace("workers", table(["name", "status", "host / pid", "queues", { label: "concurrency", num: 1 },
    "version", "started", "last heartbeat"], rows));
}

// Every baseline on the same hold-out rows (and, for risk, its macro-F1).
function baselinesTitle(m) {
  const f1 = m.baseline_macro_f1 || {};
  return Object.entries(m.baselines || {})
    .map(([name, v]) => `${name}: ${num(v, 4)}${f1[name] === undefined ? "" : `, macro-F1 ${num(f1[name], 3)}`}`)
    .join("\n");
}

// The model and every baseline on the held-out start snapshots alone.
function startCell(m) {
  const title = Object.entries(m.baselines_start_snapshot || {})
    .map(([name, v]) => `${name}: ${num(v, 4)}`)
    .join("\n");
  return el("td", { class: "num", title: title ? `baselines at the start snapshot\n${title}` : "" },
    m.start_snapshot_holdout === undefined || m.start_snapshot_holdout === null ? "–" : num(m.start_snapshot_holdout, 4));
}

// The learner choice of a regression: every candidate's and baseline's
// validation figure (rows inside the training data, not the hold-out).
function learnerCell(v, m) {
  const c = m.learner_choice;
  if (!c) return el("td", {}, v.learner);
  const figures = Object.entries(c.validation || {})
    .map(([name, x]) => `${name}: ${num(x, 4)}${name === c.chosen ? " (chosen)" : ""}`)
    .join("\n");
  const title = `validation on ${c.validation_projects} training projects, ${c.validation_rows} rows\n${figures}\n${c.reason}`;
  return el("td", { title }, v.learner,
    el("span", { class: "sub muted" }, `chosen on validation: ${c.chosen}`));
}

function renderModels(data) {
  const parts = [];
  for (const [target, t] of Object.entries(data.targets)) {
    parts.push(el("h3", {}, `${target} — production: ${t.production_version === null ? "none" : "v" + t.production_version}`));
    if (!t.versions.length) { parts.push(el("p", { class: "muted" }, "no versions yet")); continue; }
    const rows = t.versions.map(v => {
      const m = v.metrics || {};
      const higher = m.metric === "accuracy";
      return el("tr", {},
        el("td", {}, `v${v.version}`),
        el("td", { class: `stage-${v.stage}` }, v.stage),
        learnerCell(v, m),
        el("td", {}, m.metric || "–"),
        el("td", { class: "num", title: m.macro_f1 === undefined || m.macro_f1 === null ? "" : `macro-F1 ${num(m.macro_f1, 3)}` }, num(m.holdout, 4)),
        startCell(m),
        el("td", { class: "num", title: baselinesTitle(m) }, num(m.baseline, 4),
          el("span", { class: "sub muted" }, m.baseline_name || "")),
        el("td", { class: "num" }, `${higher ? "≥" : "≤"} ${num(m.threshold, 4)}`),
        el("td", {}, m.passed === undefined ? "–" : (m.passed ? el("span", { class: "ok" }, "passed") : el("span", { class: "error" }, "failed"))),
        el("td", { class: "num" }, m.improvement_over_baseline === undefined ? "–" : `${(100 * m.improvement_over_baseline).toFixed(1)} %`),
        el("td", { title: v.created_at }, ago(v.created_at)),
        el("td", { class: "muted" }, v.stage_reason || ""));
    });
    parts.push(table(["version", "stage", "learner", "metric", { label: "hold-out", num: 1 },
      { label: "at start", num: 1 }, { label: "baseline", num: 1 }, { label: "threshold", num: 1 }, "gate",
      { label: "vs baseline", num: 1 }, "created", "reason"], rows));
    if (t.production_version !== null) {
      const holder = el("div", { class: "chart", id: `holdout-${target}` }, el("p", { class: "muted" }, "loading hold-out chart…"));
      parts.push(holder);
      holdoutChart(target, t.production_version).then(chart => {
        const now = document.getElementById(`holdout-${target}`);
        if (now) now.replaceChildren(...chart);
      });
    }
  }
  replace("models", ...parts);
}

// The production version's hold-out pairs (projects closed most recently,
// never trained on), fetched once per version.
const holdoutCache = new Map();
async function holdoutChart(target, version) {
  const key = `${target}/${version}`;
  if (!holdoutCache.has(key)) {
    holdoutCache.set(key, api(`/api/v1/models/${target}/versions/${version}`)
      .then(r => (r.status === 200 && r.body.metrics && r.body.metrics.holdout_pairs) || [])
      .catch(() => []));
  }
  const pairs = await holdoutCache.get(key);
  const caption = el("p", { class: "muted" },
    `production v${version}: predicted vs actual on ${pairs.length} hold-out rows (the most recently closed projects, never trained on)`);
  if (!pairs.length) return [el("p", { class: "muted" }, "no hold-out pairs recorded for this version")];
  // Classes are strings (a confusion matrix), numbers a scatter plot.
  const chart = typeof pairs[0].predicted === "string"
    ? confusion(pairs)
    : scatter(pairs, `${target}: predicted vs actual on the hold-out`);
  return [caption, chart];
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// Predicted against actual, with the y = x line; points on it are exact.
function scatter(pairs, title) {
  const W = 320, H = 320, P = 40;
  const xs = pairs.map(p => Number(p.actual)), ys = pairs.map(p => Number(p.predicted));
  let lo = Math.min(...xs, ...ys), hi = Math.max(...xs, ...ys);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return el("p", { class: "muted" }, "no numeric pairs");
  if (hi === lo) { hi += 1; lo -= 1; }
  const sx = v => P + (v - lo) / (hi - lo) * (W - 2 * P);
  const sy = v => H - P - (v - lo) / (hi - lo) * (H - 2 * P);
  const root = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, class: "scatter" });
  root.append(svg("rect", { x: P, y: P, width: W - 2 * P, height: H - 2 * P, fill: "#fafbfc", stroke: "#dde1e7" }));
  root.append(svg("line", { x1: sx(lo), y1: sy(lo), x2: sx(hi), y2: sy(hi), stroke: "#9aa3b2", "stroke-dasharray": "4 3" }));
  for (const p of pairs) {
    const c = svg("circle", { cx: sx(Number(p.actual)), cy: sy(Number(p.predicted)), r: 3.5, fill: "#2f5bd3", "fill-opacity": 0.7 });
    c.append(svg("title", {}, `project ${p.project_id}: predicted ${num(Number(p.predicted), 2)}, actual ${num(Number(p.actual), 2)}`));
    root.append(c);
  }
  root.append(svg("text", { x: W / 2, y: H - 8, "text-anchor": "middle" }, "actual"));
  root.append(svg("text", { x: 12, y: H / 2, transform: `rotate(-90 12 ${H / 2})`, "text-anchor": "middle" }, "predicted"));
  root.append(svg("text", { x: P, y: H - P + 14 }, num(lo, 1)));
  root.append(svg("text", { x: W - P, y: H - P + 14, "text-anchor": "end" }, num(hi, 1)));
  root.append(svg("text", { x: P - 4, y: P + 4, "text-anchor": "end" }, num(hi, 1)));
  return root;
}

// Risk classes: counts of predicted (columns) for each actual (rows).
function confusion(pairs) {
  const order = ["low", "medium", "high"];
  const rank = c => (order.indexOf(c) + 1) || order.length + 1;
  const classes = [...new Set(pairs.flatMap(p => [String(p.actual), String(p.predicted)]))]
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const count = (a, p) => pairs.filter(x => String(x.actual) === a && String(x.predicted) === p).length;
  const rows = classes.map(a => el("tr", {}, el("th", {}, `actual ${a}`),
    classes.map(p => el("td", { class: "num" + (a === p ? " ok" : "") }, count(a, p)))));
  return el("table", { class: "confusion" },
    el("thead", {}, el("tr", {}, el("th", {}, ""), classes.map(p => el("th", { class: "num" }, `predicted ${p}`)))),
    el("tbody", {}, rows));
}

function renderDrift(status, body) {
  const reports = status === 200 && body && Array.isArray(body.reports) ? body.reports : [];
  if (!reports.length) { replace("drift", el("p", { class: "muted", id: "no-drift" }, "no drift report yet")); return; }
  const parts = [];
  for (const r of reports) {
    parts.push(el("h3", {}, `${r.target} — checked ${ago(r.checked_at)}: drift score ${num(r.drift_score, 3)} `,
      r.drift_detected ? el("span", { class: "error" }, "drift detected") : el("span", { class: "ok" }, "no drift"),
      r.retrain_job_id ? ` (retrain job ${r.retrain_job_id})` : ""));
    // Drifted features first, then the largest distances; the rest are
    // counted, not listed (a report compares every feature).
    const all = (r.features || []).slice()
      .sort((a, b) => (b.drifted - a.drifted) || (Number(b.score) - Number(a.score)));
    const shown = all.slice(0, Math.max(10, all.filter(f => f.drifted).length));
    const feats = shown.map(f => el("tr", {},
      el("td", {}, f.name), el("td", {}, f.method), el("td", { class: "num" }, num(f.score, 4)),
      el("td", {}, f.drifted ? el("span", { class: "error" }, "drifted") : "–")));
    const block = [];
    if (feats.length) block.push(el("div", {}, table(["feature", "method", { label: "score", num: 1 }, ""], feats),
      all.length > shown.length ? el("p", { class: "muted" }, `${all.length - shown.length} more features compared, none drifted`) : ""));
    const z = r.realised;
    if (z) {
      const pairs = Array.isArray(z.pairs) ? z.pairs : [];
      const summary = el("p", {}, `realised on ${z.projects} closed projects: ${z.metric} ${num(z.value, 4)} (hold-out ${num(z.holdout, 4)})`);
      let chart = el("p", { class: "muted" }, "no closed project to compare yet");
      if (pairs.length) chart = z.metric === "accuracy" ? confusion(pairs) : scatter(pairs, `${r.target}: predicted vs actual`);
      block.push(el("div", {}, summary, chart));
    }
    parts.push(el("div", { class: "chart" }, block));
  }
  replace("drift", ...parts);
}

function pct(v) { return v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)} %`; }

function renderScoring(body) {
  const parts = [];
  const run = (label, r) => {
    if (!r) return el("p", { class: "muted" }, `${label}: none yet`);
    const cls = r.status === "succeeded" ? "ok" : "error";
    return el("p", {}, `${label}: `, el("span", { class: cls }, r.status),
      ` ${ago(r.finished_at)}, ${num(r.projects)} open projects, coverage ${pct(r.coverage)}`,
      r.reason ? ` (${r.reason})` : "", r.error ? el("span", { class: "error" }, ` ${r.error}`) : "");
  };
  parts.push(run("last scoring run", body.last_run));
  if (body.last_run && body.last_success && body.last_run.job_id !== body.last_success.job_id) parts.push(run("last successful run", body.last_success));
  for (const a of body.active || []) parts.push(el("p", { class: "muted" }, `scoring job ${a.job_id} ${a.status} ${pct(a.progress)} ${a.stage || ""}`));
  const cover = (body.last_success && body.last_success.targets) || {};
  const rows = (body.forecasts || []).map(f => {
    const c = cover[f.target] || {};
    const old = f.oldest_age_seconds !== null && f.oldest_age_seconds > body.max_age_seconds;
    return el("tr", {}, el("td", {}, f.target), el("td", { class: "num" }, num(f.production_version)),
      el("td", { class: "num" }, num(f.kept)), el("td", { class: "num" }, pct(c.coverage)),
      el("td", { class: "num" + (old ? " error" : "") }, f.oldest_age_seconds === null ? "–" : `${Math.round(f.oldest_age_seconds / 60)} min`));
  });
  parts.push(table(["target", { label: "production", num: 1 }, { label: "forecasts kept", num: 1 },
    { label: "coverage (last run)", num: 1 }, { label: "oldest", num: 1 }], rows));
  parts.push(el("p", { class: "muted" }, `schedule ${body.score_cron}; stale after ${Math.round(body.max_age_seconds / 3600)} h`));
  replace("scoring", ...parts);
}

// ---- polling ------------------------------------------------------------

let timer = null;

function showKeyForm(message) {
  document.getElementById("key-form").hidden = false;
  document.getElementById("key-error").textContent = message || "";
  document.getElementById("status").textContent = "API key needed";
  document.getElementById("forget-key").hidden = true;
}

async function refresh() {
  clearTimeout(timer);
  try {
    const calls = await Promise.allSettled([
      api("/api/v1/queues"),
      api("/api/v1/jobs?state=failed,dead&limit=20"),
      api("/api/v1/jobs?limit=25"),
      api("/api/v1/workers"),
      api("/api/v1/models"),
      api("/api/v1/monitoring/drift"),
      api("/api/v1/scoring"),
    ]);
    const auth = calls.find(c => c.status === "rejected" && c.reason instanceof AuthError);
    if (auth) { showKeyForm(apiKey() ? auth.reason.message : ""); return; }
    document.getElementById("key-form").hidden = true;
    document.getElementById("forget-key").hidden = !apiKey();
    const ok = i => calls[i].status === "fulfilled" && calls[i].value.status === 200 ? calls[i].value.body : null;
    const fail = (id, i) => {
      const c = calls[i];
      const msg = c.status === "rejected" ? c.reason.message
        : (c.value.body && c.value.body.error ? c.value.body.error.message : `HTTP ${c.value.status}`);
      replace(id, el("p", { class: "error" }, msg));
    };
    ok(0) ? renderQueues(ok(0)) : fail("queues", 0);
    ok(0) ? renderCallbacks(ok(0)) : fail("callbacks", 0);
    ok(1) ? renderJobs("failed-jobs", ok(1), "no failed or dead jobs") : fail("failed-jobs", 1);
    ok(2) ? renderJobs("recent-jobs", ok(2), "no jobs yet") : fail("recent-jobs", 2);
    ok(3) ? renderWorkers(ok(3)) : fail("workers", 3);
    ok(4) ? renderModels(ok(4)) : fail("models", 4);
    const d = calls[5];
    if (d.status === "fulfilled") renderDrift(d.value.status, d.value.body);
    else fail("drift", 5);
    ok(6) ? renderScoring(ok(6)) : fail("scoring", 6);
    document.getElementById("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    document.getElementById("status").textContent = `error: ${e.message}`;
  }
  timer = setTimeout(refresh, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("key-form").addEventListener("submit", ev => {
    ev.preventDefault();
    const input = document.getElementById("api-key");
    sessionStorage.setItem(KEY_STORE, input.value.trim());
    input.value = "";
    refresh();
  });
  document.getElementById("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    refresh();
  });
  refresh();
});
