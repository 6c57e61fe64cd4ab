// callvault live page: keep the list of calls fresh, and listen to a call with WebSocket + Web Audio.
// Plain JavaScript, no library. Frames: 8-byte header (version, channel, 0, u32 LE position in
// samples since the call began) and 16-bit little-endian PCM at the rate the "hello" message names.
"use strict";

(function () {
  const root = document.getElementById("live");
  if (!root) return;
  const JITTER_SECONDS = 0.15; // played this long after arrival: absorbs network jitter, keeps latency low
  let listening = null;

  function text(el, value) { if (el) el.textContent = value; }
  function clock(seconds) { const s = Math.max(0, Math.floor(seconds)); return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0"); }

  // ---------------------------------------------------------------------------------- the list
  function ownIds() { return Array.from(document.querySelectorAll(".own-call")).map((el) => el.dataset.callId).sort().join("|"); }

  function renderMonitorable(calls) {
    const body = document.querySelector("#live-calls tbody");
    if (!body) return;
    body.replaceChildren();
    const rows = calls.filter((c) => c.may_monitor);
    if (!rows.length) {
      const tr = body.insertRow(); tr.className = "empty-row";
      const td = tr.insertCell(); td.colSpan = 8; td.textContent = "No call you may monitor is being recorded now.";
      return;
    }
    for (const c of rows) {
      const tr = body.insertRow(); tr.dataset.callId = c.call_id;
      const cells = [(c.agent || "(unknown)") + (c.extension ? " · ext " + c.extension : ""), c.team || "", c.direction,
        clock(c.seconds), c.consent_state, c.state, c.listeners.map((l) => l.listener + " (" + l.purpose.replace(/_/g, " ") + ")").join(", ")];
      for (const value of cells) tr.insertCell().textContent = value;
      const button = document.createElement("button");
      button.type = "button"; button.className = "listen"; button.dataset.callId = c.call_id; button.textContent = "Listen";
      button.disabled = c.state !== "recording" || (listening && listening.callId === c.call_id);
      tr.insertCell().appendChild(button);
    }
  }

  function renderOwn(calls) {
    const mine = calls.filter((c) => c.own);
    if (mine.map((c) => c.call_id).sort().join("|") !== ownIds() && !listening) { location.reload(); return; }
    for (const c of mine) {
      const card = document.querySelector('.own-call[data-call-id="' + CSS.escape(c.call_id) + '"]');
      text(card && card.querySelector(".duration"), clock(c.seconds));
      const note = card && card.querySelector(".monitored");
      if (!note) continue;
      note.replaceChildren();
      if (c.listeners.length) {
        const strong = document.createElement("strong"); strong.textContent = "You are being monitored";
        note.append(strong, " by " + c.listeners.map((l) => l.listener + " (" + l.role.replace(/_/g, " ") + ", " +
          l.purpose.replace(/_/g, " ") + ")").join(", ") + ".");
      } else {
        note.textContent = "Nobody is monitoring this call.";
      }
    }
  }

  async function refresh() {
    try {
      const resp = await fetch("/api/v1/live/calls", {credentials: "same-origin", headers: {"Accept": "application/json"}});
      if (!resp.ok) return;
      const data = await resp.json();
      renderMonitorable(data.calls);
      renderOwn(data.calls);
    } catch (e) { /* the next refresh tries again */ }
  }
  setInterval(refresh, 2000);

  // -------------------------------------------------------------------------------- listening
  const player = document.getElementById("player");
  const status = document.getElementById("listen-status");

  function stop(message, reason) {
    if (!listening) return;
    const current = listening;
    listening = null;
    status.dataset.closedAt = String(Date.now());
    status.dataset.reason = reason || "";
    status.setAttribute("role", "alert");
    text(status, message);
    try { current.ws.close(1000); } catch (e) { /* already closed */ }
    setTimeout(() => current.ctx.close(), 500);
    document.querySelectorAll("button.listen").forEach((b) => { b.disabled = false; });
  }

  function listen(callId) {
    if (listening) stop("You left the line.", "listener_left");
    const purpose = document.getElementById("purpose").value;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(proto + "//" + location.host + "/api/v1/live/calls/" + encodeURIComponent(callId) +
      "/listen?purpose=" + encodeURIComponent(purpose));
    ws.binaryType = "arraybuffer";
    const ctx = new AudioContext();
    const pans = [ctx.createStereoPanner(), ctx.createStereoPanner()];
    pans[0].pan.value = -0.6; pans[1].pan.value = 0.6; // remote party left, agent right, as in recordings
    pans.forEach((p) => p.connect(ctx.destination));
    const state = {callId, ws, ctx, rate: 8000, startedMs: 0, base: null, frames: 0, played: 0, decoded: 0, latencies: []};
    listening = state;
    player.hidden = false;
    status.setAttribute("role", "status");
    delete status.dataset.closedAt; delete status.dataset.reason;
    text(status, "Connecting…");
    text(document.getElementById("frames"), "0"); text(document.getElementById("played"), "0");
    document.querySelectorAll("button.listen").forEach((b) => { b.disabled = b.dataset.callId === callId; });

    ws.onmessage = (event) => {
      if (listening !== state) return;
      if (typeof event.data === "string") {
        const msg = JSON.parse(event.data);
        if (msg.type === "hello") {
          state.rate = msg.rate; state.startedMs = msg.started_ms || 0;
          text(status, "Listening (" + purpose.replace(/_/g, " ") + ") · " + (msg.parties === "agent" ? "agent only" : "both parties"));
        } else if (msg.type === "ended" || msg.type === "refused") {
          stop((msg.type === "refused" ? "Refused: " : "Monitoring ended: ") + msg.message, msg.reason || msg.type);
        }
        return;
      }
      const buf = event.data;
      const view = new DataView(buf);
      const channel = view.getUint8(1) ? 1 : 0;
      const pos = view.getUint32(4, true);
      const pcm = new Int16Array(buf, 8);
      if (!pcm.length) return;
      const audio = ctx.createBuffer(1, pcm.length, state.rate);
      const out = audio.getChannelData(0);
      for (let i = 0; i < pcm.length; i++) out[i] = pcm[i] / 32768;
      state.decoded += 1;
      if (state.startedMs) state.latencies.push(Date.now() - (state.startedMs + (pos / state.rate) * 1000));
      let when = state.base === null ? null : state.base + pos / state.rate;
      if (when === null || when < ctx.currentTime || when > ctx.currentTime + 1.0) {
        state.base = ctx.currentTime + JITTER_SECONDS - pos / state.rate; // (re)anchor: first frame, underrun or jump
        when = state.base + pos / state.rate;
      }
      const source = ctx.createBufferSource();
      source.buffer = audio;
      source.connect(pans[channel]);
      source.onended = () => { state.played += 1; text(document.getElementById("played"), String(state.played)); };
      source.start(when);
      state.frames += 1;
      const frames = document.getElementById("frames");
      text(frames, String(state.frames));
      frames.dataset.decoded = String(state.decoded);
      if (state.latencies.length) {
        const sorted = state.latencies.slice(-200).sort((a, b) => a - b);
        frames.dataset.latencyMs = String(Math.round(sorted[Math.floor(sorted.length * 0.95)] + JITTER_SECONDS * 1000));
      }
    };
    ws.onclose = (event) => {
      if (listening === state) stop("Monitoring ended (connection closed, code " + event.code + ").", "closed");
    };
    ctx.resume();
  }

  root.addEventListener("click", (event) => {
    const button = event.target.closest("button.listen");
    if (button) listen(button.dataset.callId);
    if (event.target.closest("#leave")) stop("You left the line.", "listener_left");
  });
})();
