// skyreel dashboard, the jumps (issue 17): jumps listed by passenger and booking with capture
// time, camera/card and station; a search by name or booking; one jump's view: a still of
// every clip, the finished video playable in the page, the card's "safe to remove" and
// warnings, failed steps with their last log lines and a retry button, and for a jump that
// waits for a person the QR frame beside the assign form with a lookup of recent bookings.
// Uses app.js's helpers (el, $, api, when, trouble, review, refresh). Text goes in as text.
"use strict";

window.skyreelJumps = (() => {
  let query = "";
  let typing = null;
  const LOG_LINES = 5;
  const answers = new Map(); // "<execution>:<step>" → the retry's answer, kept across re-renders

  const who = (s) => s.passenger || (s.booking_id ? "" : "no booking yet");
  const camera = (s) => (s.card_label ? `${s.card_label} (${s.card_id})` : `card ${s.card_id}`);

  // a phone shows the jump below the lists: bring it into view once it is there
  const open = (key) => review(key).then(() => {
    if (matchMedia("(max-width: 900px)").matches) $("#detail").scrollIntoView({ block: "start" });
  });

  function row(s) {
    return el("li", { "data-jump": s.key, class: "jump", tabindex: "0",
      onclick: () => open(s.key), onkeydown: (ev) => { if (ev.key === "Enter") open(s.key); } },
      el("div", { class: "who" },
        el("b", { "data-passenger": "" }, who(s)),
        s.booking_id ? el("span", { class: "booking", "data-booking": "" }, s.booking_id) : "",
        el("span", { class: `badge ${s.status}` }, s.status.replace("_", " ")),
        s.execution_status ? el("span", { class: `badge ${s.execution_status}` }, s.execution_status) : ""),
      el("div", { class: "meta" },
        s.captured_at ? el("span", { "data-captured": "" }, when(s.captured_at)) : "",
        el("span", {}, camera(s)), s.station ? el("span", {}, `station ${s.station}`) : "",
        el("span", {}, `${s.files} clips`)),
      ...trouble(s.review_reason, s.warnings, s.status));
  }

  async function load() {
    const list = $("#jumps");
    if (!list) return;
    const q = query ? `&q=${encodeURIComponent(query)}` : "";
    const page = await api(`/api/sessions?limit=50${q}`);
    list.replaceChildren(...(page.items.length ? page.items.map(row)
      : [el("li", { class: "hint" }, query ? `no jump matches “${query}”` : "no jumps yet")]));
  }

  // --- one jump ----------------------------------------------------------------------------------

  function clip(f, isQr) {
    const name = el("span", { class: "name" }, f.name);
    if (!f.url) return el("li", { "data-footage": f.id }, f.name); // not on the share: named only
    return el("li", { [isQr ? "data-qr-clip" : "data-footage"]: f.id, class: "clip" },
      f.frame_url ? el("img", { src: f.frame_url, alt: `still of ${f.name}`, loading: "lazy", "data-still": f.id }) : "",
      el("a", { href: f.url, target: "_blank", rel: "noopener" }, name),
      f.duration_s ? el("span", { class: "hint" }, ` ${f.duration_s.toFixed(1)} s`) : "");
  }

  function video(s) {
    const published = s.media.filter((m) => m.kind === "video" && m.url.startsWith("/media/output/"));
    const poster = s.media.find((m) => m.kind === "poster" && m.url.startsWith("/media/output/"));
    if (!published.length) {
      return s.media.filter((m) => m.kind !== "file").map(mediaItem).filter(Boolean);
    }
    return published.map((m) => el("figure", { class: "finished" },
      el("video", { controls: "", preload: "metadata", src: m.url, poster: poster ? poster.url : null,
        "data-video": m.url, playsinline: "" }),
      el("figcaption", {}, "finished video · ",
        el("a", { href: m.url, download: "" }, m.name), poster ? " · " : "",
        poster ? el("a", { href: poster.url, target: "_blank", rel: "noopener" }, "poster") : "")));
  }

  async function cardSafety(cardId) {
    try {
      const c = await api(`/api/cards/${encodeURIComponent(cardId)}`);
      return el("div", { class: "card-safety", "data-card-safety": cardId },
        ...c.notes.map((n) => el("div", { class: `why ${n.severity}`, "data-card-note": n.kind }, n.message)));
    } catch (err) {
      return el("div", { class: "why warning" }, `card ${cardId}: ${err.message}`);
    }
  }

  async function lastLines(eid, step) {
    const logs = await api(`/api/executions/${eid}/steps/${encodeURIComponent(step)}/logs?limit=2000`);
    return logs.lines.slice(-LOG_LINES).map((l) => `#${l.attempt} ${l.level}: ${l.message}`);
  }

  async function failures(eid) {
    const e = await api(`/api/executions/${eid}`);
    const failed = e.steps.filter((st) => st.status === "failed");
    const said = [...answers].filter(([k]) => k.startsWith(`${eid}:`) && !failed.some((st) => k === `${eid}:${st.name}`))
      .map(([k, a]) => el("output", { class: `result ${a.bad ? "error" : "assigned"}`, "data-retry-result": k.slice(`${eid}:`.length) }, a.text));
    if (!failed.length) return said.length ? [el("h3", {}, "Retried"), ...said] : [];
    const items = await Promise.all(failed.map(async (st) => {
      const out = el("output", { class: "result", "data-retry-result": st.name });
      const remember = (text, bad) => { answers.set(`${eid}:${st.name}`, { text, bad }); out.textContent = text; out.className = `result ${bad ? "error" : "assigned"}`; };
      const lines = await lastLines(eid, st.name).catch((err) => [err.message]);
      return el("li", { "data-failed-step": st.name },
        el("b", {}, st.name), ` failed (attempt ${st.attempt}): `, el("span", { class: "error" }, st.error || "no error recorded"),
        el("pre", { class: "loglines" }, lines.length ? lines.join("\n") : "no log lines"),
        el("button", { class: "retry", "data-retry": st.name, onclick: async () => {
          out.textContent = "retrying…";
          try {
            const res = await api(`/api/executions/${eid}/steps/${encodeURIComponent(st.name)}/retry`,
              { method: "POST", headers: { "X-Actor": "dashboard" } });
            remember(`retry ${st.name}: ${res.retried ? `${res.retried.join(", ")} run again` : JSON.stringify(res)}`, false);
          } catch (err) {
            remember(`retry ${st.name} failed — ${err.message}`, true);
          }
          refreshSoon();
        } }, "Retry"), out);
    }));
    return [el("h3", {}, "Failed"), el("ul", { class: "failures" }, ...items)];
  }

  async function bookings(list, q) {
    const found = await api(`/api/bookings/recent?limit=20${q ? `&q=${encodeURIComponent(q)}` : ""}`);
    list.replaceChildren(...found.items.map((b) => el("option", { value: b.booking_id },
      b.passenger ? `${b.passenger} · ${b.jumps} jump${b.jumps === 1 ? "" : "s"}` : "")));
    return found.items;
  }

  function assignForm(s, key) {
    const form = $("#review-form").content.firstElementChild.cloneNode(true);
    const img = $("img.still", form);
    if (s.frame_url) img.src = s.frame_url; else img.remove();
    const booking = $("#booking", form);
    const passenger = $("#passenger", form);
    const list = $("datalist", form);
    let known = [];
    bookings(list, "").then((items) => { known = items; }).catch(console.error);
    booking.addEventListener("input", async () => {
      const hit = known.find((b) => b.booking_id === booking.value.trim());
      if (hit && hit.passenger && !passenger.value) passenger.value = hit.passenger;
      if (!hit && booking.value.trim()) known = await bookings(list, booking.value.trim()).catch(() => known);
    });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = { booking_id: booking.value.trim(), passenger: passenger.value.trim() };
      for (const f of ["email", "product"]) { const v = $(`#${f}`, form)?.value.trim(); if (v) body[f] = v; } // issue 16
      const out = $("output", form);
      try {
        const res = await api(`/api/sessions/${encodeURIComponent(key)}/assign`, {
          method: "POST", headers: { "Content-Type": "application/json", "X-Actor": "dashboard" },
          body: JSON.stringify(body) });
        out.textContent = `assigned to ${res.booking_id} (${res.passenger})`;
        out.className = "result assigned";
      } catch (err) {
        out.textContent = err.message;
        out.className = "result error";
      }
      await refresh();
    });
    return form;
  }

  async function render(s, key, standalone, detail, current) {
    const parts = [];
    if (standalone) {
      const [safety, failed] = await Promise.all([cardSafety(s.card_id),
        s.execution_id !== null ? failures(s.execution_id).catch((err) => [el("p", { class: "error" }, err.message)]) : []]);
      if (!current()) return;
      const qr = s.qr_file ? [s.qr_file] : [];
      parts.push(
        el("h2", { "data-jump-title": "" }, s.passenger ? `${s.passenger}` : "Jump — no booking yet",
          s.booking_id ? el("span", { class: "booking" }, s.booking_id) : ""),
        el("p", { class: "meta" }, el("span", { class: `badge ${s.status}` }, s.status.replace("_", " ")),
          s.captured_at ? ` recorded ${when(s.captured_at)}` : "", ` · ${camera(s)}`,
          s.station ? ` · station ${s.station}` : "", ` · ${s.footage.length} footage clips`),
        ...trouble(s.review_reason, s.warnings, s.status), safety, ...video(s),
        el("h3", {}, "Clips"),
        el("ul", { class: "footage clips" }, ...qr.map((f) => clip(f, true)), ...s.footage.map((f) => clip(f, false))),
        ...failed);
      detail.replaceChildren(...parts);
    }
    // issue 15: the automatic edit (timeline, marks, EDL, "re-render with these marks")
    if (s.edit && window.skyreelEdit) detail.append(window.skyreelEdit.section(s.edit, key, detail.clientWidth - 32));
    // issue 16: the passenger link as a QR code for the desk, and "resend"
    if (s.booking_id && window.skyreelDelivery) detail.append(window.skyreelDelivery.section(s.booking_id));
    if (!["needs_review", "unassigned"].includes(s.status)) return;
    detail.append(assignForm(s, key));
  }

  document.addEventListener("DOMContentLoaded", () => {
    const box = $("#jump-search");
    if (!box) return;
    box.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => { query = box.value.trim(); load().catch(console.error); }, 200);
    });
  });
  return { load, render };
})();
