// The live run view: every state on this page is built from the run's events, replayed from the
// database and then streamed (ws/runs/<id>/?after=<seq>); a reconnect resumes after the last seq.
const data = JSON.parse(document.getElementById("page-data").textContent);
const $ = (sel, root = document) => root.querySelector(sel);

const CLOSE_REASONS = {
  4401: "You are not logged in (4401): log in again to follow this run.",
  4404: "This run does not exist or is not one you may see (4404).",
  1011: "The server's event stream broke (1011); reconnecting…",
};

const state = {
  lastSeq: 0,
  events: [],
  patients: new Map(), // number -> {status, steps: Map(index -> {state, reason, text})}
  counters: {hl7: 0, acked: 0, wl: 0, wlfound: 0, mpps: 0, stored: 0, committed: 0, generated: 0, bytes: 0},
  startedAt: null,
  endedAt: null,
  status: data.status,
  finished: data.finished,
};
for (const p of data.patients) state.patients.set(p.number, {status: p.status, steps: new Map()});

let socket = null;
let retry = 0;
let stopped = false;

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${proto}://${location.host}${data.ws_path}?after=${state.lastSeq}`);
  socket.addEventListener("open", () => {
    retry = 0;
    setConnection(state.finished ? "Connected — the run has ended; showing its recorded events." : "Live.", "ok");
  });
  socket.addEventListener("message", (msg) => {
    const frame = JSON.parse(msg.data);
    if ("seq" in frame) onEvent(frame);
    else if ("run_status" in frame) onStatus(frame);
    else if ("reply" in frame) onReply(frame);
  });
  socket.addEventListener("close", (ev) => {
    socket = null;
    if (ev.code === 4401 || ev.code === 4404) {
      stopped = true;
      setConnection(CLOSE_REASONS[ev.code], "error");
      return;
    }
    if (stopped) return;
    retry = Math.min(retry + 1, 5);
    setConnection(CLOSE_REASONS[ev.code] || `Connection lost; reconnecting in ${retry} s…`, "warn");
    setTimeout(connect, retry * 1000);
  });
}

function setConnection(text, kind) {
  const el = $("#connection");
  el.textContent = text;
  el.dataset.kind = kind;
}

// -- events -------------------------------------------------------------------------------------
function patientOf(ev) {
  const n = ev.patient;
  if (n == null) return null;
  if (!state.patients.has(n)) state.patients.set(n, {status: "pending", steps: new Map()});
  return state.patients.get(n);
}

// A run that ends without finishing its patients: those in flight failed (error, abandoned: the server
// records them so) or, cancelled, were cancelled with it; the ones not started were cancelled.
function settle(cancelled) {
  for (const [n, q] of state.patients) {
    if (q.status === "running") q.status = cancelled ? "cancelled" : "failed";
    if (q.status === "pending") q.status = "cancelled";
    dirty.add(n);
  }
}

function onEvent(ev) {
  if (ev.seq <= state.lastSeq) return; // the server sends each seq once; never count one twice
  state.lastSeq = ev.seq;
  state.events.push(ev);
  const c = state.counters;
  const p = patientOf(ev);
  const pl = ev.payload || {};
  switch (ev.type) {
    case "run.started": state.startedAt = Date.parse(ev.created_at); break;
    case "run.finished": case "run.cancelled": case "run.error": case "run.abandoned":
      state.endedAt = Date.parse(ev.created_at);
      if (ev.type !== "run.finished") settle(ev.type === "run.cancelled");
      break;
    case "run.rate_changed": if ($("#rate")) $("#rate").value = pl.to; break;
    case "patient.started": {
      p.status = "running";
      const m = /^Patient \d+: (.+?) \(/.exec(ev.message);
      updateRow(ev.patient, {name: m ? m[1] : "", mrn: pl.patient_id, accession: pl.accession});
      break;
    }
    case "exam.bound": updateRow(ev.patient, {exam: pl.exam_id}); break;
    case "patient.passed": p.status = "passed"; break;
    case "patient.failed": p.status = "failed"; p.reason = pl.reason; break;
    case "hl7.sent": c.hl7 += 1; if (pl.ack_code === "AA" || pl.ack_code === "CA") c.acked += 1; break;
    case "worklist.published": c.wl += 1; break;
    case "worklist.found": c.wlfound += 1; break;
    case "mpps.sent": c.mpps += 1; break;
    case "dicom.generated": c.generated += pl.instances || 0; c.bytes += pl.bytes || 0; break;
    case "dicom.stored": c.stored += pl.stored || 0; break;
    case "commitment.result": c.committed += pl.committed || 0; break;
  }
  if (p && ev.step_index != null) {
    const prev = p.steps.get(ev.step_index) || {};
    let st = "ok";
    if (ev.type === "step.skipped") st = "skipped";
    if (ev.level === "error" || ev.type === "step.failed") st = "failed";
    if (prev.state === "failed") st = "failed";
    const step = {state: st, reason: st === "failed" ? ev.message : (prev.reason || ""), text: prev.text};
    if (ev.type === "dicom.generated") step.text = `${pl.instances}`;
    if (ev.type === "dicom.stored") step.text = `${pl.stored}/${(pl.stored || 0) + (pl.failed || 0)}`;
    p.steps.set(ev.step_index, step);
    p.steps.lastTitle = ev.message;
  }
  if (ev.patient != null) dirty.add(ev.patient);
  scheduleRender();
  appendEvent(ev);
}

function onStatus(frame) {
  state.status = frame.run_status;
  state.finished = frame.finished;
  if (frame.finished) {
    // The status may arrive before the run's end event: the rows settle with the badge, not after it.
    if (frame.run_status !== "succeeded") settle(frame.run_status === "cancelled");
    for (const id of ["#cancel-form", "#rate-form"]) if ($(id)) $(id).hidden = true;
    if (!state.endedAt) state.endedAt = Date.now();
    if (socket) setConnection("The run has ended; every recorded event is shown.", "ok");
  }
  scheduleRender();
}

function onReply(frame) {
  const el = $("#action-result");
  if (frame.ok) {
    el.dataset.kind = "ok";
    el.textContent = frame.reply === "cancel" ? "Cancel requested: steps in flight finish, the rest are cancelled."
      : frame.reply === "rate" ? `Arrival rate set to ${frame.rate_per_hour} patients per hour.` : "Done.";
  } else {
    el.dataset.kind = "error";
    el.textContent = frame.error.message;
  }
}

// -- rendering ----------------------------------------------------------------------------------
let pending = false;
const dirty = new Set(state.patients.keys()); // patient rows to redraw on the next frame
function scheduleRender() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; render(); });
}

function ensureRow(number) {
  let row = $(`#patients tr[data-patient="${number}"]`);
  if (row) return row;
  $("#patients tr.placeholder")?.remove();
  row = document.createElement("tr");
  row.dataset.patient = number;
  const link = data.patient_url.replace("999999999", number);
  row.innerHTML = `<td><a href="${link}">${number}</a></td><td class="pname"></td><td class="pmrn"></td>`
    + `<td class="pexam"></td><td class="pacc"></td><td class="pstatus"><span class="badge"></span></td>`
    + data.steps.map((s) => `<td class="step" data-step="${s.index}"><span class="st st-pending" title="pending">·</span></td>`).join("");
  const rows = [...document.querySelectorAll("#patients tbody tr")];
  const after = rows.find((r) => Number(r.dataset.patient) > number);
  $("#patients tbody").insertBefore(row, after || $("#patients tr.not-started"));
  const opt = document.createElement("option");
  opt.value = number; opt.textContent = number;
  if (![...$("#ev-patient").options].some((o) => o.value === String(number))) $("#ev-patient").append(opt);
  return row;
}

function updateRow(number, fields) {
  const row = ensureRow(number);
  if (fields.name) $(".pname", row).textContent = fields.name;
  if (fields.mrn) $(".pmrn", row).textContent = fields.mrn;
  if (fields.accession) $(".pacc", row).textContent = fields.accession;
  if (fields.exam) $(".pexam", row).textContent = fields.exam;
}

const SYMBOL = {ok: "✓", failed: "✗", skipped: "–", running: "…", pending: "·"};

function render() {
  if (state.status) {  // drawn with the rows, so that the badge never runs ahead of them
    const badge = $("#run-status");
    badge.textContent = state.status;
    badge.className = `badge status-${state.status}`;
  }
  const counts = {passed: 0, failed: 0, inflight: 0, waiting: 0, cancelled: 0};
  for (const [number, p] of state.patients) {
    if (p.status === "passed") counts.passed += 1;
    else if (p.status === "failed") counts.failed += 1;
    else if (p.status === "running") counts.inflight += 1;
    else if (p.status === "pending") counts.waiting += 1;
    else if (p.status === "cancelled") counts.cancelled += 1;
    if (!dirty.has(number)) continue;
    const row = ensureRow(number);
    const badge = $(".pstatus .badge", row);
    badge.textContent = p.status;
    badge.className = `badge status-${p.status}`;
    if (p.reason) badge.title = p.reason;
    // The first step without a result is the one running (steps run in order).
    const firstOpen = data.steps.find((s) => !p.steps.has(s.index));
    for (const s of data.steps) {
      const cell = $(`td[data-step="${s.index}"] .st`, row);
      const step = p.steps.get(s.index);
      let st = step ? step.state : "pending";
      if (!step && p.status === "running" && firstOpen && firstOpen.index === s.index) st = "running";
      if (!step && (p.status === "failed" || p.status === "cancelled")) st = "pending";
      cell.className = `st st-${st}`;
      cell.textContent = step && step.text ? step.text : SYMBOL[st];
      cell.title = `${s.label}: ${st}${step && step.reason ? ` — ${step.reason}` : ""}`;
      cell.setAttribute("aria-label", cell.title);
    }
  }
  dirty.clear();
  // Patients with no event yet wait; once the run has ended without finishing them they never will
  // (the server's summary counts them cancelled): one row stands for them, not one row each.
  const unstarted = Math.max(0, data.patient_count - state.patients.size);
  const ended = state.finished && state.status !== "succeeded" && state.status !== "failed";
  if (ended) counts.cancelled += unstarted;
  else counts.waiting += unstarted;
  drawUnstarted(ended ? unstarted : 0);
  const c = state.counters;
  const end = state.endedAt || Date.now();
  const seconds = state.startedAt ? Math.max(0.001, (end - state.startedAt) / 1000) : 0;
  const values = {...counts, hl7: c.hl7, acked: c.acked, wl: c.wl, wlfound: c.wlfound, mpps: c.mpps,
    stored: c.stored, committed: c.committed, generated: c.generated, mb: (c.bytes / 1e6).toFixed(1),
    ips: seconds ? (c.generated / seconds).toFixed(1) : "0", elapsed: seconds ? `${seconds.toFixed(1)} s` : "–"};
  for (const [k, v] of Object.entries(values)) {
    const el = $(`#counters [data-c="${k}"]`);
    if (el) el.textContent = v;
  }
}

// "2–30", or "2, 5–9, 12 … and 40 more ranges" past eight ranges, for the numbers in 1..patient_count that have no row.
function unstartedNumbers(limit = 8) {
  const runs = [];
  let start = null;
  for (let n = 1; n <= data.patient_count + 1; n += 1) {
    const missing = n <= data.patient_count && !state.patients.has(n);
    if (missing && start === null) start = n;
    if (!missing && start !== null) { runs.push(start === n - 1 ? `${start}` : `${start}–${n - 1}`); start = null; }
  }
  const shown = runs.slice(0, limit).join(", ");
  return runs.length > limit ? `${shown} and ${runs.length - limit} more ranges` : shown;
}

let unstartedDrawn = -1;
function drawUnstarted(count) {
  if (count === unstartedDrawn) return;
  unstartedDrawn = count;
  $("#patients tr.not-started")?.remove();
  if (!count) return;
  $("#patients tr.placeholder")?.remove();
  const row = document.createElement("tr");
  row.className = "not-started";
  const label = `${count} patient${count === 1 ? "" : "s"} never started: cancelled with the run`;
  row.innerHTML = `<td class="pnumbers"></td><td colspan="4" class="muted"></td>`
    + `<td class="pstatus"><span class="badge status-cancelled">cancelled</span></td>`
    + (data.steps.length ? `<td colspan="${data.steps.length}"></td>` : "");
  row.cells[0].textContent = unstartedNumbers();
  row.cells[1].textContent = label;
  $("#patients tbody").append(row);
}

setInterval(() => { if (!state.finished && state.startedAt) scheduleRender(); }, 1000);

// -- event log ----------------------------------------------------------------------------------
const filters = {patient: "", step: "", errors: false};
const LOG_ROWS = 3000; // the newest rows matching the filters stay in the page
function matches(ev) {
  if (filters.patient === "run" && ev.patient != null) return false;
  if (filters.patient && filters.patient !== "run" && String(ev.patient) !== filters.patient) return false;
  if (filters.step !== "" && String(ev.step_index) !== filters.step) return false;
  if (filters.errors && ev.level === "info") return false;
  return true;
}

function eventRow(ev) {
  const tr = document.createElement("tr");
  tr.className = `level-${ev.level}`;
  const time = new Date(ev.created_at).toLocaleTimeString([], {hour12: false});
  const step = ev.step_index != null ? (data.steps.find((s) => s.index === ev.step_index)?.short || ev.step_type) : "";
  for (const text of [ev.seq, time, ev.patient ?? "run", step, ev.type, ev.message]) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.append(td);
  }
  return tr;
}

function appendEvent(ev) {
  if (!matches(ev)) { updateCount(); return; }
  const log = $("#event-log");
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  const body = $("#events");
  body.append(eventRow(ev));
  if (body.childElementCount > LOG_ROWS) body.firstElementChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
  updateCount();
}

function updateCount() {
  const shown = $("#events").childElementCount;
  $("#ev-count").textContent = `${shown} of ${state.events.length} events`
    + (shown === LOG_ROWS ? " (the newest shown)" : "");
}

function rerenderLog() {
  const body = $("#events");
  body.replaceChildren(...state.events.filter(matches).slice(-LOG_ROWS).map(eventRow));
  updateCount();
}

$("#ev-patient").addEventListener("change", (e) => { filters.patient = e.target.value; rerenderLog(); });
$("#ev-step").addEventListener("change", (e) => { filters.step = e.target.value; rerenderLog(); });
$("#ev-errors").addEventListener("change", (e) => { filters.errors = e.target.checked; rerenderLog(); });

// -- actions over the socket (the plain form posts when the socket is down) ---------------------
$("#cancel-form")?.addEventListener("submit", (e) => {
  if (socket && socket.readyState === WebSocket.OPEN) {
    e.preventDefault();
    socket.send(JSON.stringify({action: "cancel"}));
  }
});
$("#rate-form")?.addEventListener("submit", (e) => {
  e.preventDefault();
  const value = Number($("#rate").value);
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    onReply({ok: false, error: {message: "Not connected; try again in a moment."}});
    return;
  }
  socket.send(JSON.stringify({action: "rate", rate_per_hour: $("#rate").value.trim() === "" ? null : value}));
});

render();
connect();
