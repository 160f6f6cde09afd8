// The Scones console's only script (served from our origin; the page's policy allows no other). It keeps the
// executions table live, shows a clicked state's details, and sends the write actions with the console's token.
"use strict";

const token = () => document.querySelector('meta[name="console-token"]').content;
const LIVE_INTERVAL_MS = 1000; // the list is asked again every second, only while the page is visible

function say(text, isError) {
  const out = document.getElementById("action-result");
  if (!out) return;
  out.textContent = text;
  out.className = isError ? "error" : "";
}

async function post(url, body, contentType) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "X-Console-Token": token(), "Content-Type": contentType || "application/json" },
    body: body,
    credentials: "same-origin",
  });
  const answer = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

// --- the executions list, live --------------------------------------------------------------------------
function liveTable() {
  const section = document.getElementById("executions");
  if (!section) return;
  const form = document.getElementById("filters");
  const table = document.getElementById("table");
  let etag = null;
  let timer = null;
  const query = () => new URLSearchParams(new FormData(form)).toString();
  async function refresh() {
    clearTimeout(timer);
    if (document.visibilityState === "visible") {
      try {
        const headers = etag ? { "If-None-Match": etag } : {};
        const response = await fetch(`${section.dataset.live}?${query()}`, { headers, credentials: "same-origin" });
        if (response.status === 200) {
          etag = response.headers.get("ETag");
          table.innerHTML = await response.text(); // rendered and escaped by the server's templates
        }
      } catch (e) {
        /* the console stopped or the network blinked: try again at the next tick */
      }
    }
    timer = setTimeout(refresh, LIVE_INTERVAL_MS);
  }
  form.addEventListener("change", () => {
    history.replaceState(null, "", `?${query()}`);
    etag = null;
    refresh();
  });
  form.addEventListener("input", (event) => {
    if (event.target.name === "q") {
      history.replaceState(null, "", `?${query()}`);
      etag = null;
      refresh();
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    etag = null;
    refresh();
  });
  document.addEventListener("visibilitychange", refresh);
  timer = setTimeout(refresh, LIVE_INTERVAL_MS);
}

// --- starting executions ----------------------------------------------------------------------------------
function uploads() {
  const zone = document.getElementById("dropzone");
  if (!zone) return;
  async function send(file) {
    say(`uploading ${file.name}…`);
    try {
      const answer = await post("/actions/upload", file, file.type || "application/octet-stream");
      say(`uploaded s3://${answer.bucket}/${answer.key}; started by the ${answer.via}: it appears in the list`);
    } catch (e) {
      say(`upload refused: ${e.message}`, true);
    }
  }
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    for (const file of event.dataTransfer.files) send(file);
  });
  document.getElementById("file").addEventListener("change", (event) => {
    for (const file of event.target.files) send(file);
  });
  const form = document.getElementById("start-json");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let input;
    try {
      input = JSON.parse(form.elements.input.value);
    } catch (e) {
      say(`not JSON: ${e.message}`, true);
      return;
    }
    try {
      const answer = await post("/actions/start", JSON.stringify({ machine: form.elements.machine.value, input }));
      window.location.assign(answer.url);
    } catch (e) {
      say(`not started: ${e.message}`, true);
    }
  });
}

// --- one execution ----------------------------------------------------------------------------------------
function executionPage() {
  const data = document.getElementById("states-data");
  if (!data) return;
  const states = JSON.parse(data.textContent);
  const set = (id, value) => { document.getElementById(id).textContent = value === null || value === undefined ? "" : String(value); };
  function show(node) {
    document.querySelectorAll("svg .state.selected").forEach((n) => n.classList.remove("selected"));
    node.classList.add("selected");
    const s = states[node.dataset.state] || {};
    set("detail-name", s.name);
    set("detail-status", s.items !== null && s.items !== undefined ? `${s.status} (${s.items} items)` : s.status);
    set("detail-attempts", s.attempts || "");
    set("detail-duration", s.duration_ms === null || s.duration_ms === undefined ? "" : `${s.duration_ms} ms`);
    set("detail-error", [s.error, s.reported_error && s.reported_error !== s.error ? `(reported as ${s.reported_error})` : ""].join(" ").trim());
    set("detail-cause", (s.errors || []).length > 1 ? `${s.errors.join("\n")}\n\n${s.cause || ""}` : s.cause);
    set("detail-input", s.input);
    set("detail-output", s.output);
  }
  document.querySelectorAll("svg .state").forEach((node) => {
    node.addEventListener("click", () => show(node));
    node.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") show(node); });
  });
  const logs = document.getElementById("logs");
  fetch(logs.dataset.src, { credentials: "same-origin" })
    .then((r) => r.text())
    .then((html) => { logs.innerHTML = html; }) // rendered and escaped by the server's templates
    .catch(() => { logs.textContent = "the log lines could not be read"; });
  const rerun = document.getElementById("rerun");
  if (rerun) {
    rerun.addEventListener("click", async () => {
      try {
        const answer = await post(`/actions/rerun?${new URLSearchParams({ arn: rerun.dataset.arn })}`, "{}");
        say(`run again by ${answer.how} (${answer.why})`);
        setTimeout(() => window.location.assign(answer.url), 1500);
      } catch (e) {
        say(`not run again: ${e.message}`, true);
      }
    });
  }
}

function monitoringPage() {
  const button = document.getElementById("draw-report");
  if (!button) return;
  button.addEventListener("click", async () => {
    button.disabled = true;
    say("drawing the report…");
    try {
      const answer = await post("/monitoring/draw", "{}");
      say(`drawn: ${answer.summary.records} captured inferences`);
      window.location.reload();
    } catch (e) {
      say(`not drawn: ${e.message}`, true);
    } finally {
      button.disabled = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  liveTable();
  uploads();
  executionPage();
  monitoringPage();
});
