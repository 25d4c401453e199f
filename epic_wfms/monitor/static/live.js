// Live pages: the server tells us (SSE) when the store changed; we re-fetch this page and
// swap its <main>. Writes send the bearer token kept in localStorage ("Sign in").
(function () {
  "use strict";
  const status = document.getElementById("live-status");
  let busy = false, again = false;
  document.body.dataset.updates = "0";

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, { headers: { "Accept": "text/html" } })
      .then((r) => r.text())
      .then((html) => {
        const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        const current = document.getElementById("live");
        if (fresh && current) {
          current.replaceWith(fresh);
          document.body.dataset.updates = String(Number(document.body.dataset.updates) + 1);
          status.classList.add("flash");
          setTimeout(() => status.classList.remove("flash"), 500);
        }
      })
      .catch(() => {})
      .finally(() => { busy = false; if (again) { again = false; refresh(); } });
  }

  if (window.EventSource && !document.body.dataset.static) {
    let first = true;
    const events = new EventSource("/api/v1/events");
    events.addEventListener("open", () => status.classList.add("on"));
    events.addEventListener("error", () => status.classList.remove("on"));
    events.addEventListener("change", () => { if (first) { first = false; return; } refresh(); });
  }

  function toast(text, error) {
    const box = document.createElement("div");
    box.className = "toast" + (error ? " err" : "");
    box.textContent = text;
    document.body.appendChild(box);
    setTimeout(() => box.remove(), 6000);
  }

  document.addEventListener("click", (event) => {
    const signin = event.target.closest("[data-signin]");
    if (signin) {
      const token = prompt("Paste a bearer token (epic-wfms monitor token --user NAME --role ROLE)",
                           localStorage.getItem("epicToken") || "");
      if (token !== null) {
        localStorage.setItem("epicToken", token.trim());
        // pages are plain GETs: reads take the token from this cookie, writes from the header
        document.cookie = "epic_wfms_token=" + encodeURIComponent(token.trim()) +
          "; path=/; SameSite=Strict";
        whoami();
      }
      return;
    }
    const button = event.target.closest("[data-write]");
    if (!button) return;
    const [method, url] = button.dataset.write.split(" ");
    let body = {};
    if (button.dataset.ask === "reason") {
      const reason = prompt("Reason (kept in the operator log)");
      if (!reason) return;
      body = { reason };
    } else if (button.dataset.ask === "priority") {
      const value = prompt("New priority (-1000..10000)");
      if (value === null) return;
      body = { priority: Number(value) };
    }
    const headers = { "Content-Type": "application/json" };
    const token = localStorage.getItem("epicToken");
    if (token) headers.Authorization = "Bearer " + token;
    fetch(url, { method, headers, body: JSON.stringify(body) })
      .then((r) => r.json().then((data) => ({ ok: r.ok, data })))
      .then(({ ok, data }) => {
        if (ok) { toast("Done: " + (data.result || "ok")); refresh(); return; }
        const e = data.error || {};
        toast([e.what, e.why && "why: " + e.why, e.fix && "fix: " + e.fix].filter(Boolean)
          .join("\n"), true);
      });
  });

  function whoami() {
    const token = localStorage.getItem("epicToken");
    const label = document.getElementById("whoami");
    if (!label) return;
    if (!token) { label.textContent = "Sign in"; return; }
    fetch("/api/v1/users/me", { headers: { Authorization: "Bearer " + token } })
      .then((r) => r.json())
      .then((me) => { label.textContent = me.user ? me.user + " · " + me.roles.join(", ")
                                                  : "Sign in (token rejected)"; });
  }
  whoami();
})();
