// skyreel dashboard, issue 16: the passenger's email and link — the "Outbox / deliveries" panel
// (GET /api/outbox), and for a jump with a booking its passenger link as a QR code to scan at
// the desk (GET /api/bookings/{id}/link.svg, which issues or reuses the link) with a "resend"
// button (POST /api/bookings/{id}/resend). Self-contained: app.js only calls load() on refresh
// and section(bookingId) when it draws a jump. All API text goes in through textContent.
"use strict";

window.skyreelDelivery = (() => {
  const links = new Map(); // booking -> {svg, url, expires} (a link is reused, so fetch it once)

  function auth(extra = {}) {
    const t = localStorage.getItem("skyreel-token") || "";
    return t ? { ...extra, Authorization: `Bearer ${t}` } : extra;
  }

  function node(tag, attrs = {}, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined) continue;
      if (k === "class") n.className = v;
      else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
      else n.setAttribute(k, v);
    }
    for (const c of children) n.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
    return n;
  }

  async function errorText(res) {
    const body = await res.json().catch(() => ({}));
    return body.error ? `${body.error.code}: ${body.error.message}` : res.statusText;
  }

  async function downloadEml(row) {
    const res = await fetch(`/api/outbox/${row.id}/eml`, { headers: auth() });
    if (!res.ok) { alert(`the message could not be fetched — ${await errorText(res)}`); return; }
    const url = URL.createObjectURL(await res.blob());
    const a = node("a", { href: url, download: row.file || `delivery-${row.id}.eml` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  async function load() {
    const box = document.getElementById("outbox");
    if (!box) return;
    const res = await fetch("/api/outbox?limit=30", { headers: auth() });
    if (!res.ok) { box.replaceChildren(node("p", { class: "hint" }, `outbox: ${await errorText(res)}`)); return; }
    const data = await res.json();
    const mode = data.smtp ? "sent by SMTP" : `no SMTP configured: ${data.outbox_sent} message(s) in the outbox folder`;
    const rows = data.deliveries.map((d) => node("tr", { "data-delivery": d.id, "data-booking": d.booking_id },
      node("td", {}, d.booking_id),
      node("td", {}, d.recipient),
      node("td", {}, node("span", { class: `badge ${d.status === "sent" ? "succeeded" : d.status === "failed" ? "failed" : "running"}` }, d.status),
        d.attempts > 1 ? ` (${d.attempts} tries)` : ""),
      node("td", {}, d.deliverables),
      node("td", {}, d.file ? node("button", { class: "eml", onclick: () => downloadEml(d) }, d.file) : ""),
      node("td", { class: "error" }, d.status === "sent" ? "" : d.last_error)));
    box.replaceChildren(node("p", { class: "hint", id: "outbox-mode" }, mode),
      rows.length ? node("table", { id: "deliveries" }, node("thead", {}, node("tr", {},
        ...["booking", "to", "status", "what", "message", ""].map((h) => node("th", {}, h)))),
      node("tbody", {}, ...rows)) : node("p", { class: "hint" }, "no email sent yet"));
  }

  async function fetchLink(bookingId) {
    if (links.has(bookingId)) return links.get(bookingId);
    const res = await fetch(`/api/bookings/${encodeURIComponent(bookingId)}/link.svg`, { headers: auth({ "X-Actor": "dashboard" }) });
    if (!res.ok) throw new Error(await errorText(res));
    const found = { svg: await res.text(), url: res.headers.get("X-Passenger-Link") || "",
      expires: res.headers.get("X-Link-Expires") || "" };
    links.set(bookingId, found);
    return found;
  }

  function qrImage(svg) {
    // the SVG is ours (segno); shown as an <img> from a data: URL, never parsed into the page
    // (a data: URL, unlike a revoked blob: URL, stays valid for as long as the image is shown)
    const url = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
    return node("img", { class: "qr", alt: "QR code of the passenger link", width: "220", src: url });
  }

  function section(bookingId) {
    const out = node("output", { class: "result" });
    const holder = node("div", { class: "qr-holder" });
    const sec = node("section", { class: "delivery", "data-booking": bookingId },
      node("h3", {}, `Passenger link — booking ${bookingId}`), holder,
      node("button", { class: "resend", onclick: () => resend(bookingId, out) }, "Resend email"), out);
    fetchLink(bookingId).then((l) => {
      holder.replaceChildren(qrImage(l.svg), node("p", {},
        node("a", { href: l.url, target: "_blank", rel: "noopener", class: "passenger-link" }, l.url)),
      node("p", { class: "hint" }, l.expires ? `valid until ${new Date(l.expires).toLocaleDateString()}` : ""));
    }).catch((err) => holder.replaceChildren(node("p", { class: "hint" }, `link: ${err.message}`)));
    return sec;
  }

  async function resend(bookingId, out) {
    if (!confirm(`Send booking ${bookingId}'s link by email once more?`)) return;
    const res = await fetch(`/api/bookings/${encodeURIComponent(bookingId)}/resend`, {
      method: "POST", headers: auth({ "X-Actor": "dashboard" }) });
    if (!res.ok) { out.textContent = `resend failed — ${await errorText(res)}`; out.className = "result error"; return; }
    const body = await res.json();
    out.textContent = res.status === 202 ? "queued: the worker sends it when it runs"
      : body.sent ? `sent (${body.key})` : `nothing sent (${body.key})`;
    out.className = "result assigned";
    await load();
  }

  return { load, section };
})();
