// skyreel dashboard, issue 15: a session's automatic edit — the phase timeline chart, the marks,
// the edit decision list, and the form that moves a mark and re-renders. Vanilla JS, no library.
// Uses app.js's `el` and `api` (loaded with it). All text from the API goes in as text.
"use strict";

window.skyreelEdit = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const KINDS = ["exit", "opening", "landing"];
  const BANDS = [
    { key: "altitude_m", label: "altitude", unit: "m" },
    { key: "accel_g", label: "acceleration", unit: "g" },
    { key: "sound_db", label: "sound", unit: "dB" },
  ];
  const drafts = new Map(); // session key -> {exit, opening, landing} as typed (survives re-renders)
  const answers = new Map(); // session key -> {text, bad}: the last answer to "re-render"
  let dragging = false;

  function svg(tag, attrs = {}, ...children) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) node.setAttribute(k, v);
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  const secs = (t) => `${Number(t).toFixed(1)} s`;
  const num = (v, digits = 1) => (v === null || v === undefined ? "" : Number(v).toFixed(digits));
  const finite = (v) => typeof v === "number" && Number.isFinite(v);

  function clipStarts(edit) {
    return new Map((edit.clips || []).map((c) => [c.file_id, c]));
  }

  function domain(edit) {
    const tl = edit.timeline;
    const ends = [edit.recording_s, tl && tl.t.length ? tl.t[tl.t.length - 1] : null,
      ...(edit.clips || []).map((c) => c.start_s + c.duration_s),
      ...KINDS.map((k) => edit.marks[k] && edit.marks[k].t)].filter(finite);
    return Math.max(1, ...ends);
  }

  function markText(kind, m) {
    return `${kind} at ${secs(m.t)}, confidence ${num(m.confidence, 2)}, source ${m.source}`;
  }

  // --- the chart ---------------------------------------------------------------------------------

  function chart(edit, width, onDrag) {
    const W = Math.max(300, Math.round(width));
    const left = 46, right = 10, top = 42, band = 62, gap = 10, bottom = 22;
    const H = top + BANDS.length * band + (BANDS.length - 1) * gap + bottom;
    const end = domain(edit);
    const x = (t) => left + (Math.min(Math.max(t, 0), end) / end) * (W - left - right);
    const tOf = (px) => ((px - left) / (W - left - right)) * end;
    const plotBottom = H - bottom;
    const tl = edit.timeline;
    const ranges = BANDS.map((b) => {
      const values = tl[b.key].filter(finite);
      return values.length ? [Math.min(...values), Math.max(...values)] : null;
    });
    const titleId = "edit-chart-title", descId = "edit-chart-desc";
    const describe = BANDS.map((b, i) => (ranges[i]
      ? `${b.label} from ${num(ranges[i][0])} to ${num(ranges[i][1])} ${b.unit}` : `no ${b.label} data`));
    const marks = KINDS.filter((k) => edit.marks[k]).map((k) => markText(k, edit.marks[k]));
    const root = svg("svg", { class: "edit-chart", viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-labelledby": `${titleId} ${descId}`, preserveAspectRatio: "xMinYMin meet" },
    svg("title", { id: titleId }, `Jump timeline over ${secs(end)} of recording`),
    svg("desc", { id: descId }, `${describe.join("; ")}. ${marks.join("; ") || "no marks"}.`));

    const bandTop = (i) => top + i * (band + gap);
    BANDS.forEach((b, i) => root.append(svg("rect", { class: "band", x: left, y: bandTop(i), width: W - left - right, height: band })));
    // kept spans of the EDL, shaded behind the series (placed by their clip's start)
    const starts = clipStarts(edit);
    for (const s of (edit.edl && edit.edl.spans) || []) {
      const clip = starts.get(s.file_id);
      if (!clip) continue; // an older output without clips: the table still lists the span
      const a = x(clip.start_s + s.start), b = x(clip.start_s + s.end);
      root.append(svg("rect", { class: `kept ${s.role}`, "data-kept": s.role, x: a, y: top,
        width: Math.max(1, b - a), height: plotBottom - top },
      svg("title", {}, `kept: ${s.role}, ${s.name || `file ${s.file_id}`} ${secs(s.start)}–${secs(s.end)} at ${s.speed}×`)));
    }

    BANDS.forEach((b, i) => {
      const y0 = bandTop(i);
      root.append(svg("text", { class: "band-label", x: left + 4, y: y0 + 12 }, `${b.label} (${b.unit})`));
      const range = ranges[i];
      if (!range) {
        root.append(svg("text", { class: "no-data", x: left + 4, y: y0 + band / 2 + 8 }, `no ${b.label} data`));
        return;
      }
      const [lo, hi] = range;
      const span = hi - lo || 1;
      const y = (v) => y0 + band - 3 - ((v - lo) / span) * (band - 6);
      root.append(svg("text", { class: "axis", x: left - 4, y: y0 + 10, "text-anchor": "end" }, num(hi, 0)),
        svg("text", { class: "axis", x: left - 4, y: y0 + band, "text-anchor": "end" }, num(lo, 0)));
      let d = "", pen = false;
      tl[b.key].forEach((v, j) => {
        if (!finite(v) || !finite(tl.t[j])) { pen = false; return; }
        d += `${pen ? "L" : "M"}${x(tl.t[j]).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      });
      root.append(svg("path", { class: `series ${b.key}`, "data-series": b.key, d }));
    });

    // clip boundaries
    (edit.clips || []).slice(1).forEach((c) => {
      root.append(svg("line", { class: "clip-boundary", "data-clip": c.file_id, x1: x(c.start_s), x2: x(c.start_s),
        y1: top, y2: plotBottom }, svg("title", {}, `clip ${c.name} starts at ${secs(c.start_s)}`)));
    });
    // time axis
    for (const t of [0, end / 2, end]) {
      root.append(svg("text", { class: "axis", x: x(t), y: H - 6,
        "text-anchor": t === 0 ? "start" : t === end ? "end" : "middle" }, secs(t)));
    }

    // the marks: a line each, its label on a row of its own; draggable
    const groups = {};
    KINDS.forEach((kind, row) => {
      const line = svg("line", { class: `mark-line ${kind}`, y1: 6 + row * 12, y2: plotBottom });
      const hit = svg("line", { class: "mark-hit", y1: 0, y2: plotBottom });
      const label = svg("text", { class: `mark-label ${kind}`, y: 12 + row * 12 });
      const title = svg("title");
      const g = svg("g", { class: "mark", "data-mark": kind }, title, line, label, hit);
      groups[kind] = { g, line, hit, label, title };
      root.append(g);
      hit.addEventListener("pointerdown", (ev) => {
        ev.preventDefault();
        dragging = true;
        hit.setPointerCapture(ev.pointerId);
      });
      hit.addEventListener("pointermove", (ev) => {
        if (!dragging || !hit.hasPointerCapture(ev.pointerId)) return;
        const box = root.getBoundingClientRect();
        const t = Math.round(Math.min(Math.max(tOf(((ev.clientX - box.left) / box.width) * W), 0), end) * 10) / 10;
        place(kind, t, null);
        onDrag(kind, t);
      });
      const stop = (ev) => {
        dragging = false;
        if (hit.hasPointerCapture(ev.pointerId)) hit.releasePointerCapture(ev.pointerId);
      };
      hit.addEventListener("pointerup", stop);
      hit.addEventListener("pointercancel", stop);
    });

    // Put a mark line at t (null: hide it); `mark` is the detected one (for its confidence).
    function place(kind, t, mark) {
      const m = groups[kind];
      if (!finite(t)) { m.g.setAttribute("display", "none"); return; }
      m.g.removeAttribute("display");
      const px = x(t);
      for (const l of [m.line, m.hit]) { l.setAttribute("x1", px); l.setAttribute("x2", px); }
      const rightHalf = px > W / 2;
      m.label.setAttribute("x", rightHalf ? px - 3 : px + 3);
      m.label.setAttribute("text-anchor", rightHalf ? "end" : "start");
      const detected = mark || m.mark;
      const moved = !detected || Math.abs(detected.t - t) > 0.05;
      const how = !detected ? " (set)" : moved ? " (moved)"
        : detected.source === "operator" ? " · set by operator" : ` · ${num(detected.confidence, 2)}`;
      m.label.textContent = `${kind} ${secs(t)}${how}`;
      m.title.textContent = moved ? `${kind} set to ${secs(t)}` : markText(kind, detected);
      if (mark) m.mark = mark;
    }
    return { node: root, place };
  }

  // --- the EDL, the reasons, the form ------------------------------------------------------------

  function edlTable(edl) {
    if (!edl) return el("p", { class: "hint", "data-edl-none": "" }, "no edit decided: unless marks are set here, every clip is rendered whole");
    const rows = edl.spans.map((s, i) => el("tr", { "data-span": i },
      el("td", {}, s.role), el("td", {}, s.name || `file ${s.file_id}`),
      el("td", { class: "num" }, `${num(s.start)}–${num(s.end)}`),
      el("td", { class: "num" }, `${s.speed}×`), el("td", { class: "num" }, num(s.output_s))));
    return el("div", { class: "scroll" }, el("table", { class: "edl", "aria-label": "edit decision list" },
      el("thead", {}, el("tr", {}, ...["role", "clip", "from–to (s)", "speed", "output (s)"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...rows),
      el("tfoot", {}, el("tr", {}, el("td", { colspan: "4" }, "video length"), el("td", { class: "num" }, num(edl.total_s))))));
  }

  // Show the answer in the form on screen (a refresh may have redrawn it since the click).
  function answer(out, key, text, bad) {
    answers.set(key, { text, bad });
    const shown = document.getElementById("edit-form");
    const target = shown && shown.dataset.session === key ? shown.querySelector("output") : out;
    target.textContent = text;
    target.className = `result ${bad ? "error" : "sent"}`;
  }

  function form(edit, key, plot) {
    const draft = drafts.get(key) || {};
    const inputs = {};
    const fields = KINDS.map((kind) => {
      const m = edit.marks[kind];
      const input = el("input", { type: "number", id: `mark-${kind}`, name: kind, step: "0.1", min: "0",
        max: finite(edit.recording_s) ? String(edit.recording_s) : null,
        inputmode: "decimal", required: kind === "landing" ? null : "",
        placeholder: kind === "landing" ? "none" : null });
      input.value = draft[kind] ?? (m ? num(m.t) : "");
      input.addEventListener("input", () => {
        drafts.set(key, { ...(drafts.get(key) || {}), [kind]: input.value });
        if (plot) plot.place(kind, input.value === "" ? null : Number(input.value), null);
      });
      inputs[kind] = input;
      return el("label", {}, `${kind} (s)${kind === "landing" ? ", optional" : ""} `, input);
    });
    const out = el("output", { class: "result", "aria-live": "polite", for: KINDS.map((k) => `mark-${k}`).join(" ") });
    const last = answers.get(key);
    if (last) { out.textContent = last.text; out.className = `result ${last.bad ? "error" : "sent"}`; }
    const f = el("form", { id: "edit-form", class: "edit-marks", "aria-label": "adjust marks", "data-session": key },
      el("fieldset", {}, el("legend", {}, "Adjust marks"), ...fields,
        el("button", { type: "submit", id: "rerender" }, "Re-render with these marks"), out));
    f.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const value = (k) => (inputs[k].value === "" ? null : Number(inputs[k].value));
      const body = { exit: value("exit"), opening: value("opening"), landing: value("landing") };
      if (!finite(body.exit) || !finite(body.opening)) return answer(out, key, "exit and opening need a time in seconds", true);
      if (!(body.exit < body.opening) || (body.landing !== null && !(body.opening < body.landing))) {
        return answer(out, key, "the marks must be in order: exit before opening before landing", true);
      }
      answer(out, key, "sending…", false);
      try {
        const res = await api(`/api/sessions/${encodeURIComponent(key)}/edit`, {
          method: "POST", headers: { "Content-Type": "application/json", "X-Actor": "dashboard" },
          body: JSON.stringify(body) });
        drafts.delete(key);
        const what = Array.isArray(res.rerun)
          ? `marks stored; ${res.rerun.length ? res.rerun.join(", ") : "nothing"} running again, render and publish follow${res.applied_before ? " (this change was applied before)" : ""}`
          : res.status ? `${res.status}${res.command_id ? ` (command ${res.command_id})` : ""}` : JSON.stringify(res);
        answer(out, key, `re-render asked: ${what}`, false);
        if (typeof refresh === "function") refresh();
      } catch (err) {
        answer(out, key, `re-render failed — ${err.message}`, true);
      }
    });
    return { form: f, inputs };
  }

  // The whole "automatic edit" part of a session detail; `width`: the room it has, in px.
  function section(edit, key, width) {
    const box = el("section", { class: "edit", "aria-labelledby": "edit-heading", "data-edit-status": edit.status },
      el("h3", { id: "edit-heading" }, "Automatic edit ", el("span", { class: `badge ${edit.status}` }, edit.status),
        edit.needs_review ? el("span", { class: "badge needs_review" }, "needs review") : ""));
    if (edit.error) box.append(el("p", { class: "error", "data-edit-error": "" }, edit.error));
    const done = ["succeeded", "failed"].includes(edit.status);
    if (!done && edit.needs_review === null) {
      box.append(el("p", { class: "hint", "data-edit-waiting": "" },
        `the automatic edit is ${edit.status}: its marks and edit show here when it is done`));
      return box;
    }
    if (edit.reasons.length) {
      box.append(el("ul", { class: "edit-reasons", "aria-label": "why a person must look" },
        ...edit.reasons.map((r) => el("li", { class: "why action" }, r))));
    }
    const tl = edit.timeline;
    const plot = tl && tl.t.length > 1 ? chart(edit, width, (kind, t) => {
      const input = document.getElementById(`mark-${kind}`);
      if (input) input.value = num(t);
      drafts.set(key, { ...(drafts.get(key) || {}), [kind]: num(t) });
    }) : null;
    if (plot) box.append(el("figure", { class: "chart" }, plot.node,
      el("figcaption", { class: "hint" }, "Altitude, acceleration and sound over the recording; shaded: what the video keeps. Drag a mark line to move it.")));
    else box.append(el("p", { class: "hint", "data-no-timeline": "" }, "no timeline stored for this edit"));
    box.append(el("ul", { class: "marks", "aria-label": "marks" }, ...KINDS.map((k) => {
      const m = edit.marks[k];
      return el("li", { "data-mark-info": k }, m ? markText(k, m) : `${k} not found`);
    })));
    if (edit.sources) {
      box.append(el("p", { class: "hint" }, `sources: telemetry ${edit.sources.telemetry ? "yes" : "no"}, sound ${edit.sources.sound ? "yes" : "no"}`));
    }
    for (const n of edit.notes) box.append(el("div", { class: "why warning" }, `⚠ ${n}`));
    box.append(el("h4", {}, "Edit decision list"), edlTable(edit.edl));
    const { form: f, inputs } = form(edit, key, plot);
    if (plot) {
      for (const k of KINDS) {
        const typed = inputs[k].value;
        plot.place(k, typed === "" ? null : Number(typed), edit.marks[k]);
      }
    }
    box.append(f);
    return box;
  }

  // True while an operator drags a mark or types a time: a refresh must wait (what was typed is
  // kept in `drafts` anyway; the button's focus does not hold the view back).
  function busy() {
    const focused = document.activeElement;
    return dragging || Boolean(focused && focused.matches && focused.matches("#edit-form input"));
  }

  return { section, busy };
})();
