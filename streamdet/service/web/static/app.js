// streamdet live monitor: loads the live streams' state (/streams) and the ingests (/info), follows
// /events (server-sent events, the same events as the ZeroMQ topics), draws one p_spoof timeline per
// stream, lists alerts, and publishes the microphone over WHIP.
// The page only displays: each window's verdict (`spoof`) and the alert state come with the events,
// decided by the service; the page never compares a score with the threshold itself.
// Plain JavaScript with no dependency and no build step: the page must work offline.
"use strict";

const MAX_STREAMS = 24;        // cards kept; the oldest ended ones go first
const TIMELINE_SECONDS = 60;   // media seconds shown per timeline
const MAX_ALERTS = 200;
const STREAM_ID = /^[A-Za-z0-9._:@-]{1,128}$/;

const state = {
  spoofThreshold: 0.5,         // drawn as a line; from the service's hello
  streams: new Map(),          // stream id -> {el, points: [{t, p, spoof}], ended, alertSeen}
  mic: null,                   // {pc, media, location, token, id} while publishing
  token: readToken(),          // the service's http.token, when it has one
};

// The access token (http.token) comes in the page's URL fragment, /#token=..., which the browser
// never sends to any server; it is kept for this tab only and removed from the address bar.
function readToken() {
  const match = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem("streamdet-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("streamdet-token") || "";
}

const $ = (id) => document.getElementById(id);

// --- events -------------------------------------------------------------------------------------

function connectEvents() {
  // EventSource cannot send headers: the token goes in the query (docs/security.md).
  const source = new EventSource(state.token ? "events?token=" + encodeURIComponent(state.token) : "events");
  source.onopen = () => setConnection("open", "live");
  source.onerror = () => {
    setConnection("closed", "reconnecting…");
    if (source.readyState !== EventSource.CLOSED) return;  // a dropped stream: EventSource retries
    // Refused (401, 503): EventSource gives up. Ask for the token if that was the reason, retry.
    fetch("streams", { cache: "no-store", headers: authHeaders(state.token) }).then((response) => {
      if (response.status === 401) {
        const token = window.prompt("This service needs its access token (http.token):");
        if (token) { state.token = token.trim(); sessionStorage.setItem("streamdet-token", state.token); }
      }
    }).catch(() => {}).finally(() => setTimeout(connectEvents, 3000));
  };
  source.onmessage = (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch (err) { return; }
    handleEvent(event);
  };
}

function setConnection(kind, text) {
  const el = $("connection");
  el.className = "connection " + kind;
  el.textContent = text;
}

function handleEvent(e) {
  switch (e.event) {
    case "hello":
      state.spoofThreshold = e.spoof_threshold;
      $("model-id").textContent = e.model_id;
      $("threshold").textContent = "p_spoof ≥ " + String(e.spoof_threshold);
      $("alert-rule").textContent = `${e.alert_rule.k} of ${e.alert_rule.n} windows, clear after ${e.alert_rule.m}` +
        (e.alert_rule.min_speech ? ` (speech windows only: ≥ ${100 * e.alert_rule.min_speech} % speech; grey dots do not count)` : "");
      $("mic-token-label").hidden = !e.whip_token_required;
      if (!e.whip) { $("mic-start").disabled = true; setMicStatus("error", "WHIP is disabled on this service"); }
      loadState();  // after hello: events from now on are not missed, and win over the snapshot
      break;
    case "score":
      addScore(e);
      break;
    case "raised":
    case "cleared":
      setAlert(e.stream_id, e.event);
      logAlert(e);
      break;
    case "ended":                                   // the stream ended with its alert raised
      logAlert(e);
      break;
    case "end":
      endStream(e);
      break;
  }
}

// --- the state before this page was opened -----------------------------------------------------

async function fetchJson(path) {
  const response = await fetch(path, { cache: "no-store", headers: authHeaders(state.token) });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

async function loadState() {
  try {
    const [info, snapshot] = await Promise.all([fetchJson("info"), fetchJson("streams")]);
    $("ingests").textContent = info.ingests.map((i) => `${i.name} ${i.endpoint}`).join(" · ") || "none";
    for (const s of snapshot.streams) restoreStream(s);
  } catch (err) { /* an older service, or it is restarting: the events still come */ }
}

function restoreStream(s) {
  const stream = streamCard(s.stream_id);
  stream.el.querySelector(".ingest").textContent = s.ingest;
  if (s.last_window && !stream.points.length) addScore({ stream_id: s.stream_id, ...s.last_window });
  if (s.alert && !stream.alertSeen) setAlert(s.stream_id, "raised");
}

// --- streams ------------------------------------------------------------------------------------

function streamCard(id) {
  let stream = state.streams.get(id);
  if (stream) return stream;
  const el = document.createElement("section");
  el.className = "stream live";
  el.dataset.streamId = id;
  el.innerHTML = `
    <div class="stream-head">
      <span class="stream-id"></span>
      <span class="ingest"></span>
      <span class="alert none">no alert</span>
      <span class="state">live</span>
      <span class="last"></span>
    </div>
    <canvas class="timeline" width="600" height="110"></canvas>`;
  el.querySelector(".stream-id").textContent = id;
  const container = $("streams");
  container.querySelector(".empty")?.remove();
  container.prepend(el);
  stream = { el, points: [], ended: false, alertSeen: false };
  state.streams.set(id, stream);
  pruneStreams();
  updateCount();
  draw(stream);
  return stream;
}

function pruneStreams() {
  if (state.streams.size <= MAX_STREAMS) return;
  for (const [id, stream] of state.streams) {      // insertion order: oldest first
    if (state.streams.size <= MAX_STREAMS) break;
    if (stream.ended) { stream.el.remove(); state.streams.delete(id); }
  }
}

function updateCount() {
  const live = [...state.streams.values()].filter((s) => !s.ended).length;
  $("stream-count").textContent = `${live} live, ${state.streams.size} shown`;
}

function addScore(e) {
  const stream = streamCard(e.stream_id);
  stream.points.push({ t: e.end, p: e.p_spoof, spoof: e.spoof, gated: e.gated === true });
  const last = stream.points[stream.points.length - 1].t;
  while (stream.points.length && stream.points[0].t < last - TIMELINE_SECONDS) stream.points.shift();
  stream.el.querySelector(".last").textContent =
    `window ${e.window} · ${e.end.toFixed(1)} s · p_spoof ${e.p_spoof.toFixed(3)}` +
    (e.gated ? ` · no speech (${(100 * e.speech).toFixed(0)} %)` : "") +
    (e.latency_ms === undefined ? "" : ` · ${Math.round(e.latency_ms)} ms`);
  draw(stream);
}

function setAlert(id, kind) {
  const stream = streamCard(id);
  stream.alertSeen = true;
  const badge = stream.el.querySelector(".alert");
  badge.className = "alert " + kind;                 // "alert raised" / "alert cleared"
  badge.textContent = kind === "raised" ? "alert raised" : "alert cleared";
  stream.el.classList.toggle("alerting", kind === "raised");
}

function endStream(e) {
  const stream = streamCard(e.stream_id);
  stream.ended = true;
  stream.el.classList.replace("live", "ended");
  stream.el.querySelector(".state").textContent =
    `ended (${e.reason}) · ${e.duration.toFixed(1)} s · ${e.windows} windows` + (e.dropped ? ` · ${e.dropped} dropped` : "");
  updateCount();
  if (state.mic && state.mic.id === e.stream_id) stopMic(false, `stream ended (${e.reason})`);
}

function logAlert(e) {
  const log = $("alert-log");
  log.querySelector(".empty")?.remove();
  const li = document.createElement("li");
  li.className = e.event;
  li.dataset.streamId = e.stream_id;
  const when = new Date(e.wall_time * 1000).toLocaleTimeString();
  li.textContent = e.event === "ended"
    ? `${when} · ${e.stream_id} · ended while raised (${e.reason}, ${e.duration.toFixed(1)} s)`
    : `${when} · ${e.stream_id} · ${e.event} at ${e.start.toFixed(1)}–${e.end.toFixed(1)} s` +
      ` (p_spoof ${e.p_spoof.toFixed(3)})`;
  log.prepend(li);
  while (log.children.length > MAX_ALERTS) log.lastChild.remove();
}

// --- the timeline chart -------------------------------------------------------------------------

function draw(stream) {
  const canvas = stream.el.querySelector("canvas");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 600, height = canvas.clientHeight || 110;
  if (canvas.width !== Math.round(width * ratio)) { canvas.width = Math.round(width * ratio); canvas.height = Math.round(height * ratio); }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const pad = { l: 28, r: 6, t: 6, b: 16 };
  const w = width - pad.l - pad.r, h = height - pad.t - pad.b;
  const last = stream.points.length ? stream.points[stream.points.length - 1].t : 0;
  const t0 = Math.max(0, last - TIMELINE_SECONDS), t1 = Math.max(t0 + 10, last);
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * w;
  const y = (p) => pad.t + (1 - p) * h;

  g.font = "10px system-ui, sans-serif";
  g.fillStyle = "#667085";
  g.strokeStyle = "#d9dde5";
  g.lineWidth = 1;
  for (const p of [0, 0.5, 1]) {
    g.beginPath(); g.moveTo(pad.l, y(p)); g.lineTo(pad.l + w, y(p)); g.stroke();
    g.fillText(p.toFixed(1), 4, y(p) + 3);
  }
  g.fillText(`${t0.toFixed(0)} s`, pad.l, height - 3);
  g.fillText(`${t1.toFixed(0)} s`, pad.l + w - 24, height - 3);

  g.setLineDash([4, 3]);                              // the alert threshold
  g.strokeStyle = "#b42318";
  const yT = y(Math.min(state.spoofThreshold, 1));
  g.beginPath(); g.moveTo(pad.l, yT); g.lineTo(pad.l + w, yT); g.stroke();
  g.setLineDash([]);

  if (!stream.points.length) return;
  g.strokeStyle = "#2f5fd0";
  g.lineWidth = 1.5;
  g.beginPath();
  stream.points.forEach((pt, i) => (i ? g.lineTo(x(pt.t), y(pt.p)) : g.moveTo(x(pt.t), y(pt.p))));
  g.stroke();
  for (const pt of stream.points) {
    // the service's verdict; grey: too little speech, the window did not count (gated)
    g.fillStyle = pt.gated ? "#98a2b3" : pt.spoof ? "#b42318" : "#1a7f37";
    g.beginPath(); g.arc(x(pt.t), y(pt.p), 2.5, 0, 2 * Math.PI); g.fill();
  }
}

// --- the microphone, published over WHIP --------------------------------------------------------

function setMicStatus(kind, text) {
  const el = $("mic-status");
  el.className = "status " + kind;
  el.textContent = text;
}

function waitForIceGathering(pc, timeoutMs) {
  // WHIP without trickle: the offer must carry every candidate.
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); } };
    const timer = setTimeout(resolve, timeoutMs);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

function authHeaders(token) {
  return token ? { Authorization: "Bearer " + token } : {};
}

async function startMic(event) {
  event.preventDefault();
  if (state.mic) return;
  const id = $("mic-stream-id").value.trim();
  const token = $("mic-token").value.trim();
  if (!STREAM_ID.test(id)) { setMicStatus("error", "a stream id is 1-128 characters of A-Z a-z 0-9 . _ : @ -"); return; }
  $("mic-start").disabled = true;
  let media = null, pc = null;
  try {
    setMicStatus("busy", "asking for the microphone…");
    // Raw audio: echo cancellation, noise suppression and gain control would alter what the CM judges.
    media = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false }, video: false });
    pc = new RTCPeerConnection({ iceServers: [] });
    for (const track of media.getAudioTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [media] });
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc, 3000);
    setMicStatus("busy", "connecting…");
    const response = await fetch("whip/" + encodeURIComponent(id), {
      method: "POST", headers: { "Content-Type": "application/sdp", ...authHeaders(token) },
      body: pc.localDescription.sdp });
    if (response.status !== 201) {
      const problem = await response.json().catch(() => ({}));
      throw new Error(`${response.status} ${problem.title || response.statusText}: ${problem.detail || ""}`);
    }
    const location = new URL(response.headers.get("Location"), response.url).href;
    await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
    state.mic = { pc, media, location, token, id };
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed") stopMic(false, "the connection failed");
    });
    streamCard(id).el.classList.add("mine");
    setMicStatus("live", `publishing as ${id} — the first score comes after about 4 s of audio`);
    $("mic-stop").disabled = false;
  } catch (err) {
    if (pc) pc.close();
    if (media) media.getTracks().forEach((t) => t.stop());
    setMicStatus("error", "could not publish: " + err.message);
    $("mic-start").disabled = false;
  }
}

async function stopMic(sendDelete = true, why = "stopped") {
  const mic = state.mic;
  if (!mic) return;
  state.mic = null;
  $("mic-stop").disabled = true;
  try {
    // DELETE ends the stream on the service (its last window is scored) before the media stops.
    if (sendDelete) await fetch(mic.location, { method: "DELETE", headers: authHeaders(mic.token), keepalive: true });
  } catch (err) { /* the service may be gone: nothing left to end */ }
  mic.pc.close();
  mic.media.getTracks().forEach((t) => t.stop());
  setMicStatus("idle", why);
  $("mic-start").disabled = false;
  $("mic-stream-id").value = defaultStreamId();
}

function defaultStreamId() {
  return "mic-" + Math.random().toString(36).slice(2, 8);
}

window.addEventListener("DOMContentLoaded", () => {
  $("mic-stream-id").value = defaultStreamId();
  $("mic-form").addEventListener("submit", startMic);
  $("mic-stop").addEventListener("click", () => stopMic(true));
  window.addEventListener("pagehide", () => stopMic(true));
  if (!window.RTCPeerConnection || !navigator.mediaDevices) {
    $("mic-start").disabled = true;
    setMicStatus("error", "this browser (or an insecure origin) offers no microphone or WebRTC");
  }
  connectEvents();
});
