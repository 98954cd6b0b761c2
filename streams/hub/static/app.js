// skyreel dashboard: REST for state, /ws/status for "something changed" (no polling).
// Every event or resync triggers a (debounced) re-fetch, so the view is never stale.
// All text from the API goes in through textContent: passenger names are untrusted.
"use strict";

const state = { selected: null, session: null, filter: "", ws: null, retryDelay: 500, seq: 0 };
const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}

// issue 17: the login is a session cookie (static/login.js); actions carry the CSRF header.
function headers(extra = {}) { return { ...extra, "X-Skyreel-Dashboard": "1" }; }

async function api(path, opts = {}) {
  const res = await fetch(path, { ...opts, credentials: "same-origin", headers: headers(opts.headers || {}) });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401) window.skyreelLogin?.show();
  if (!res.ok) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : res.statusText);
  return body;
}

const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
const pct = (x) => `${Math.round((x || 0) * 100)}%`;

function bytes(n) {
  if (n === null || n === undefined) return "";
  let value = n;
  for (const unit of ["B", "KB", "MB", "GB"]) {
    if (value < 1000) return unit === "B" ? `${value} B` : `${value.toFixed(1)} ${unit}`;
    value /= 1000;
  }
  return `${value.toFixed(1)} TB`;
}

// Why a jump waits for a person and what was left out of it: shown wherever the jump is.
function trouble(reason, warnings, status) {
  const lines = [];
  if (reason || ["needs_review", "unassigned"].includes(status)) {
    lines.push(el("div", { class: "why action", "data-review-reason": "" },
      `needs review: ${reason || (status === "unassigned" ? "no booking yet" : "reason not recorded")}`));
  }
  for (const w of warnings || []) lines.push(el("div", { class: "why warning", "data-warning": "" }, `⚠ ${w}`));
  return lines;
}

function progressCell(value, id) {
  return el("td", {},
    el("progress", { max: "1", value: String(value || 0), "data-progress": id }),
    el("span", { class: "pct" }, pct(value)));
}

// --- lists ---------------------------------------------------------------------------------------

async function loadExecutions() {
  const q = state.filter ? `&status=${encodeURIComponent(state.filter)}` : "";
  const page = await api(`/api/executions?limit=100${q}`);
  const body = $("#executions tbody");
  body.replaceChildren(...page.items.map((e) => {
    // issue 17: a jump is named by its passenger and booking, never by an internal key
    const what = e.passenger ? `${e.pipeline}: ${e.passenger} (${e.booking_id || "?"})`
      : e.subject_type === "session" ? `${e.pipeline}: no booking yet${e.card_id ? ` (card ${e.card_id})` : ""}`
      : `${e.pipeline}: ${e.subject_id}`;
    const row = el("tr", { "data-id": e.id, class: e.id === state.selected ? "selected" : "",
      onclick: () => select(e.id) },
      el("td", {}, e.id), el("td", {}, what, ...trouble(e.review_reason, e.warnings)),
      el("td", {}, el("span", { class: `badge ${e.status}` }, e.status)),
      progressCell(e.progress, `execution-${e.id}`), el("td", {}, when(e.created_at)));
    return row;
  }));
}

async function loadCards() {
  const page = await api("/api/cards?limit=50");
  $("#cards tbody").replaceChildren(...page.items.flatMap((c) => {
    const [state, ...rest] = c.notes;
    const row = el("tr", { "data-card": c.id },
      el("td", {}, c.label ? `${c.label} (${c.id})` : c.id, c.present ? "" : el("span", { class: "hint" }, " (removed)")),
      el("td", { class: "state" }, state ? el("span", { class: `badge ${state.kind}`, "data-card-state": c.id }, state.message) : ""),
      el("td", { class: "files", title: "imported / pending / failed" },
        `${c.files_imported} / ${c.files_pending} / `, el("span", { class: c.files_failed ? "error" : null }, c.files_failed)),
      el("td", { class: c.nearly_full ? "free nearly-full" : "free" },
        c.free_bytes !== null ? `${bytes(c.free_bytes)} / ${bytes(c.capacity_bytes)}` : ""),
      el("td", {}, when(c.last_seen_at)));
    if (!rest.length) return [row];
    return [row, el("tr", { class: "card-notes", "data-card-notes": c.id },
      el("td", { colspan: "5" }, ...rest.map((n) => el("div", { class: `why ${n.severity}` }, n.message))))];
  }));
}

async function loadAttention() {
  const list = await api("/api/attention?limit=100");
  const open = (key) => (ev) => { ev.preventDefault(); review(key); };
  $("#attention").replaceChildren(...(list.items.length ? list.items.map((i) => {
    const subject = i.session_key
      ? el("a", { href: "#", [i.kind === "needs_review" ? "data-session" : "data-warned-session"]: i.session_key,
        onclick: open(i.session_key) }, i.subject)
      : el("span", { class: "subject" }, i.subject);
    return el("li", { class: i.severity, "data-kind": i.kind },
      el("span", { class: `badge ${i.severity}` }, i.kind === "needs_review" ? "review" : i.severity),
      " ", subject, ": ", el("span", { class: "detail" }, i.detail));
  }) : [el("li", { class: "hint" }, "nothing needs a person")]),
  ...(list.truncated ? [el("li", { class: "hint" }, "older items left out")] : []));
}

async function loadDetectors() {
  const list = await api("/api/detectors");
  $("#detectors").replaceChildren(...list.items.map((d) => el("li", { "data-detector": d.id },
    el("span", { class: `badge ${d.online ? "online" : "offline"}` }, d.online ? "online" : "offline"),
    ` ${d.name || d.id}`, d.current_card_id ? ` — card ${d.current_card_id}` : "",
    ...d.copies.map((c) => el("progress", { max: String(c.bytes_total || 1), value: String(c.bytes_done) })),
    d.last_seen_at ? el("span", { class: "hint" }, ` last seen ${when(d.last_seen_at)}`) : "")));
}

async function loadCounters() {
  const c = await api("/api/counters");
  const items = [["imported", c.files_imported], ["failed steps", c.steps_failed],
    ["retried", c.steps_retried], ["dead letters", c.dead_letters],
    ["render queue", c.queue ? c.queue.queued + c.queue.active : "?"]];
  $("#counters").replaceChildren(...items.map(([k, v]) => el("li", {}, `${k} `, el("b", {}, v))));
}

// A poster or a video link; nothing for a file that is gone (the API gives no url for it).
function mediaItem(m) {
  if (!m || !m.url) return null;
  return m.kind === "poster" ? el("img", { class: "poster", src: m.url, alt: m.name })
    : el("p", {}, el("a", { href: m.url, target: "_blank", rel: "noopener", "data-media": m.kind }, `▶ ${m.name}`));
}

// --- one execution -------------------------------------------------------------------------------

async function select(id) {
  state.selected = id;
  state.session = null;
  for (const tr of document.querySelectorAll("#executions tr.selected")) tr.classList.remove("selected");
  const row = document.querySelector(`#executions tr[data-id="${id}"]`);
  if (row) row.classList.add("selected");
  await renderExecution();
}

async function action(path, label) {
  try {
    const res = await api(path, { method: "POST", headers: { "X-Actor": "dashboard" } });
    flash(`${label}: ${JSON.stringify(res)}`);
  } catch (err) {
    flash(`${label} failed — ${err.message}`, true);
  }
  await refresh();
}

function flash(text, bad = false) {
  const out = $("#flash") || $("#detail").appendChild(el("p", { id: "flash" }));
  out.className = bad ? "error" : "hint";
  out.textContent = text;
}

async function renderExecution() {
  const id = state.selected;
  if (id === null) return;
  const seq = ++state.seq;
  const e = await api(`/api/executions/${id}`);
  if (seq !== state.seq) return; // a newer render is under way
  const rows = e.steps.map((s) => el("tr", { "data-step": s.name },
    el("td", {}, s.name), el("td", {}, el("span", { class: `badge ${s.status}`, "data-step-status": s.name }, s.status)),
    el("td", { "data-step-attempt": s.name }, s.attempt),
    progressCell(s.status === "succeeded" ? 1 : s.progress, `step-${s.name}`),
    el("td", { class: "deps" }, s.depends_on.join(", ")),
    el("td", {}, s.duration_s !== null ? `${s.duration_s.toFixed(1)} s` : ""),
    el("td", {},
      s.status === "failed" ? el("button", { class: "retry", "data-step": s.name,
        onclick: () => action(`/api/executions/${id}/steps/${encodeURIComponent(s.name)}/retry`, `retry ${s.name}`) }, "Retry") : "",
      s.status === "running" ? el("button", { class: "force-retry", "data-step": s.name, title: "Run this step again although it is still running (its attempt is closed as cancelled)",
        onclick: () => confirm(`Run ${s.name} again although it is running?`) && action(`/api/executions/${id}/steps/${encodeURIComponent(s.name)}/retry?force=true`, `force retry ${s.name}`) }, "Run again") : "",
      el("button", { class: "logs", onclick: () => showLogs(id, s.name) }, "Logs"))));
  const media = e.media.map(mediaItem).filter(Boolean);
  const detail = $("#detail");
  detail.replaceChildren(
    el("h2", {}, `#${e.id} ${e.pipeline} — ${e.passenger || (e.subject_type === "session" ? "no booking yet" : e.subject_id)}`),
    el("p", {}, el("span", { class: `badge ${e.status}`, id: "execution-status" }, e.status), " ",
      el("progress", { max: "1", value: String(e.progress), id: "execution-progress" }),
      el("span", { class: "pct" }, pct(e.progress)),
      e.booking_id ? ` booking ${e.booking_id}` : "", e.card_id ? ` · card ${e.card_id}` : ""),
    ...trouble(e.review_reason, e.warnings),
    el("div", { class: "actions" },
      e.steps_failed ? el("button", { id: "retry-all", onclick: () => action(`/api/executions/${id}/retry`, "retry failed steps") }, "Retry failed steps") : "",
      ["running", "waiting", "pending", "failed"].includes(e.status)
        ? el("button", { id: "cancel", onclick: () => confirm("Cancel this execution?") && action(`/api/executions/${id}/cancel`, "cancel") }, "Cancel") : "",
      e.status === "cancelled"
        ? el("button", { id: "resume", onclick: () => action(`/api/executions/${id}/resume`, "resume") }, "Resume") : ""),
    ...media,
    el("table", { class: "steps" }, el("thead", {}, el("tr", {}, ...["step", "status", "attempt",
      "progress", "after", "took", ""].map((h) => el("th", {}, h)))), el("tbody", {}, ...rows)),
    el("pre", { id: "logs", hidden: "" }));
  if (e.subject_type === "session") await renderReview(e.subject_id, false, seq);
}

async function showLogs(id, step) {
  const out = $("#logs");
  const logs = await api(`/api/executions/${id}/steps/${encodeURIComponent(step)}/logs`);
  out.hidden = false;
  out.textContent = logs.lines.length ? logs.lines.map((l) =>
    `[${when(l.at)}] #${l.attempt} ${l.level} ${l.actor}: ${l.message}`).join("\n") : `no log lines for ${step}`;
}

// --- review form ---------------------------------------------------------------------------------

async function review(key) {
  state.selected = null;
  state.session = key;
  const seq = ++state.seq;
  await renderReview(key, true, seq);
}

async function renderReview(key, standalone, seq) {
  const s = await api(`/api/sessions/${encodeURIComponent(key)}`);
  if (seq !== state.seq) return; // a newer render is under way
  const detail = $("#detail");
  // issue 17: the jump view (static/jumps.js): who, when, clips, video, card, failures, assign
  if (window.skyreelJumps) return window.skyreelJumps.render(s, key, standalone, detail, () => seq === state.seq);
  if (standalone) detail.replaceChildren(el("h2", {}, `Jump ${key}`));
  if (standalone) {
    detail.append(el("p", {}, el("span", { class: `badge ${s.status}` }, s.status),
      ` card ${s.card_id} · ${s.footage.length} footage files`,
      s.passenger ? ` · ${s.passenger} (${s.booking_id})` : ""),
      ...trouble(s.review_reason, s.warnings, s.status));
    detail.append(...s.media.map(mediaItem).filter(Boolean),
      el("ul", { class: "footage" }, ...s.footage.map((f) => el("li", { "data-footage": f.id },
        f.url ? el("a", { href: f.url, target: "_blank", rel: "noopener" }, f.name) : f.name))));
  }
  // issue 15: the automatic edit (timeline, marks, EDL, "re-render with these marks")
  if (s.edit && window.skyreelEdit) detail.append(window.skyreelEdit.section(s.edit, key, detail.clientWidth - 32));
  // issue 16: the passenger link as a QR code for the desk, and "resend"
  if (s.booking_id && window.skyreelDelivery) detail.append(window.skyreelDelivery.section(s.booking_id));
  if (!["needs_review", "unassigned"].includes(s.status)) return;
  const form = $("#review-form").content.firstElementChild.cloneNode(true);
  const img = $("img.still", form);
  if (s.frame_url) img.src = s.frame_url; else img.remove();
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { booking_id: $("#booking", form).value.trim(), passenger: $("#passenger", form).value.trim() };
    for (const f of ["email", "product"]) { const v = $(`#${f}`, form).value.trim(); if (v) body[f] = v; } // issue 16
    try {
      const res = await api(`/api/sessions/${encodeURIComponent(key)}/assign`, {
        method: "POST", headers: { "Content-Type": "application/json", "X-Actor": "dashboard" },
        body: JSON.stringify(body) });
      $("output", form).textContent = `assigned to ${res.booking_id} (${res.passenger})`;
      $("output", form).className = "result assigned";
    } catch (err) {
      $("output", form).textContent = err.message;
      $("output", form).className = "result error";
    }
    await refresh();
  });
  detail.append(form);
}

// --- live updates --------------------------------------------------------------------------------

let pending = null;
function refreshSoon() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; refresh(); }, 150);
}

// The services and the free space of the share and the output (503 while degraded).
async function loadHealth() {
  const box = $("#health");
  let h;
  try {
    h = await (await fetch("/api/health")).json();
  } catch (err) {
    box.className = "health down";
    box.textContent = "hub not answering";
    return;
  }
  const disk = Object.entries(h.disk || {}).map(([name, d]) =>
    el("span", { class: d.low_space ? "low" : "", "data-disk": name },
      `${name} ${d.free_bytes === null ? "unreadable" : `${bytes(d.free_bytes)} free`}`));
  const reasons = (h.reasons || []).map((r) => el("span", { class: "reason" }, r));
  box.className = `health ${h.status === "ok" ? "ok" : "down"}`;
  box.dataset.status = h.status;
  box.replaceChildren(el("span", { class: "status" }, h.status === "ok" ? "all services up" : h.status),
    ...reasons, ...disk);
}

async function refresh() {
  try {
    await Promise.all([loadAttention(), loadExecutions(), loadCards(), loadDetectors(), loadCounters(), loadHealth(),
      ...(window.skyreelJumps ? [window.skyreelJumps.load()] : []),
      window.skyreelDelivery?.load()]); // issue 16: the outbox panel
    // Do not re-render under someone typing in the review form.
    if (document.activeElement?.closest?.("#assign-form, #jump-search")) return;
    if (window.skyreelEdit?.busy()) return; // nor under someone moving a mark
    if (state.selected !== null) await renderExecution();
    else if (state.session !== null) await review(state.session);
  } catch (err) {
    console.error(err);
  }
}

function connect() {
  if (state.ws) { state.ws.onclose = null; state.ws.close(); }
  const proto = location.protocol === "https:" ? "wss" : "ws";
  // Never a token in a URL (URLs end up in logs): it goes in the first frame instead.
  const ws = new WebSocket(`${proto}://${location.host}/ws/status`);
  state.ws = ws;
  // the login's cookie goes with the handshake (issue 17): no token in any frame either
  ws.onmessage = (msg) => {
    const data = JSON.parse(msg.data);
    if (data.type === "hello") { state.retryDelay = 500; setLive(true); refresh(); }
    else if (data.type === "resync") refresh();
    else if (data.type === "event") refreshSoon();
  };
  ws.onclose = (ev) => {
    setLive(false);
    if (ev.code === 1008) window.skyreelLogin?.show(); // refused: the login ran out (issue 17)
    setTimeout(connect, state.retryDelay);
    state.retryDelay = Math.min(state.retryDelay * 2, 10000);
  };
}

function setLive(on) {
  const b = $("#live");
  b.textContent = on ? "live" : "offline";
  b.className = `badge ${on ? "on" : "off"}`;
}

document.addEventListener("DOMContentLoaded", async () => {
  $("#status-filter").addEventListener("change", (ev) => { state.filter = ev.target.value; loadExecutions(); });
  await window.skyreelLogin?.ready; // an old browser's stored token becomes a login first
  connect();
});
