// skyreel dashboard login (issue 17): the admin token is typed once per browser, on /login;
// the hub answers with an HttpOnly session cookie, so no script ever holds the token. Every
// state-changing request of the dashboard carries X-Skyreel-Dashboard: 1 (the CSRF guard).
"use strict";

window.skyreelLogin = (() => {
  const CSRF = { "X-Skyreel-Dashboard": "1" };

  async function post(path, body) {
    const res = await fetch(path, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", ...CSRF }, body: JSON.stringify(body || {}) });
    const data = await res.json().catch(() => ({}));
    return { ok: res.ok, status: res.status, data };
  }

  // A browser that kept the token of the old "admin token" box logs in with it once; the
  // token then leaves localStorage for good.
  async function migrateOldToken() {
    const old = localStorage.getItem("skyreel-token");
    if (!old) return;
    localStorage.removeItem("skyreel-token");
    await post("/api/login", { token: old });
  }

  // The header's "logged in · log out" (or a link to log in).
  async function show() {
    const box = document.getElementById("login-state");
    if (!box) return null;
    const state = await (await fetch("/api/login", { credentials: "same-origin" })).json();
    box.replaceChildren();
    box.dataset.loggedIn = String(state.logged_in);
    if (state.logged_in) {
      const out = document.createElement("button");
      out.id = "logout";
      out.type = "button";
      out.textContent = "log out";
      out.addEventListener("click", async () => { await post("/api/logout"); location.href = "/login"; });
      box.append("logged in · ", out);
    } else {
      const a = document.createElement("a");
      a.href = "/login";
      a.id = "login-link";
      a.textContent = "log in for actions";
      box.append(a);
    }
    return state;
  }

  function page() {
    const form = document.getElementById("login-form");
    if (!form) return;
    const msg = document.getElementById("login-message");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      msg.className = "";
      msg.textContent = "checking…";
      const res = await post("/api/login", { token: document.getElementById("login-token").value });
      if (res.ok) { location.href = "/"; return; }
      msg.className = "error";
      msg.textContent = res.data.error ? res.data.error.message : `login failed (${res.status})`;
    });
  }

  const ready = (async () => {
    try { await migrateOldToken(); } catch (err) { console.error(err); }
  })();
  document.addEventListener("DOMContentLoaded", () => { page(); ready.then(show); });
  return { ready, show, CSRF };
})();
