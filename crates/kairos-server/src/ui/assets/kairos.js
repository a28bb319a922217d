// The dashboard's one script. Pages work without it (forms post, pages reload); with it:
// actions ask for confirmation where they name one, send the CSRF token as a header,
// show the server's problem details in place, and live parts refresh every 5 s.
"use strict";

function showProblem(text) {
  let box = document.getElementById("problem");
  box.hidden = false;
  box.replaceChildren();
  let h = document.createElement("h2");
  let detail = document.createElement("p");
  let extra = document.createElement("p");
  try {
    let p = JSON.parse(text);
    h.textContent = (p.status || "") + " " + (p.title || "Error");
    detail.textContent = p.detail || "";
    let code = (p.type || "").split("/").pop();
    extra.textContent = (code ? "code: " + code : "") +
      (p.errors && p.errors.length ? " · " + p.errors.map(e => e.field + ": " + e.message).join("; ") : "") +
      (p.request_id ? " · request " + p.request_id : "");
  } catch (_) {
    h.textContent = "The action failed";
    detail.textContent = text.slice(0, 500);
  }
  extra.className = "muted";
  box.append(h, detail, extra);
  box.scrollIntoView({ block: "nearest" });
}

document.addEventListener("submit", async (ev) => {
  let form = ev.target;
  // getAttribute: a form's fields named `id` or `action` shadow its properties.
  if ((form.getAttribute("method") || "get").toLowerCase() !== "post") return;
  let ask = form.dataset.confirm;
  if (form.dataset.bulk !== undefined) {
    let n = form.querySelectorAll("input[name=id]:checked").length +
      document.querySelectorAll("input[form='" + form.getAttribute("id") + "'][name=id]:checked").length;
    if (n === 0) { ev.preventDefault(); showProblem(JSON.stringify({ title: "Nothing selected", detail: "Select jobs first." })); return; }
    if (n > 1) ask = (ev.submitter ? ev.submitter.textContent.trim() : "Act on") + " " + n + " jobs?";
  }
  if (ask && !window.confirm(ask)) { ev.preventDefault(); return; }
  ev.preventDefault();
  let body = new URLSearchParams(new FormData(form, ev.submitter));
  let resp;
  try {
    resp = await fetch(form.getAttribute("action"), {
      method: "POST", body,
      headers: { "X-CSRF-Token": form.querySelector("input[name=csrf_token]").value,
        "Accept": "application/problem+json" },
    });
  } catch (e) { showProblem(JSON.stringify({ title: "The server did not answer", detail: String(e) })); return; }
  if (resp.ok) { window.location.assign(resp.url); return; }
  showProblem(await resp.text());
});

// Parts marked data-live refresh from the same URL every 5 s (paused while the tab is hidden
// or the reader has a checkbox ticked, so a selection is never lost).
let live = document.querySelectorAll("[data-live]");
if (live.length) {
  setInterval(async () => {
    if (document.hidden || document.querySelector("input[name=id]:checked")) return;
    let resp;
    try { resp = await fetch(window.location.href, { headers: { "Accept": "text/html" } }); } catch (_) { return; }
    if (!resp.ok) return;
    let doc = new DOMParser().parseFromString(await resp.text(), "text/html");
    for (let part of live) {
      let fresh = doc.getElementById(part.id);
      if (fresh) part.replaceWith(fresh);
    }
    live = document.querySelectorAll("[data-live]");
  }, 5000);
}
