// callvault's call player, shared by the recording page and the QA review page. Plain JS, no library:
// the pages' Content-Security-Policy allows scripts from this origin only, and a library would be one
// more thing to vet for a page that plays evidence.
//
// The page renders <div class="player" id="player-box" data-duration data-channels data-markers
// [data-start]> around an <audio id="player">; everything else is built here, so without JavaScript
// the browser's own controls still play the call. The audio, the transcript and everything they
// reveal come only from the purpose-checked, audited routes the page already names (the <audio> src,
// the transcript section's data-src): this file never builds a content address of its own.
"use strict";

(function () {
  const SPEEDS = [0.5, 0.75, 1, 1.25, 1.5, 2];
  const STEP = 5;
  const TICK_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];

  // "m:ss" (or "m:ss.s" with tenths), the form people read and type (the comment box accepts it back).
  function clock(seconds, tenths) {
    const t = Math.max(0, seconds || 0);
    const whole = Math.floor(t);
    let text = Math.floor(whole / 60) + ":" + String(whole % 60).padStart(2, "0");
    if (tenths) text += "." + Math.floor((t - whole) * 10 + 1e-6);
    return text;
  }

  function make(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function button(text, label, onClick) {
    const b = make("button", "secondary", text);
    b.type = "button";
    if (label) b.setAttribute("aria-label", label);
    b.addEventListener("click", onClick);
    return b;
  }

  // Keys typed into a form must stay there: Space in a comment box is a space, not "pause".
  function typing(target) {
    if (!target || !target.closest) return false;
    return Boolean(target.closest("input:not([type=range]), textarea, select, button, a, [contenteditable]"));
  }

  class Player {
    constructor(box) {
      this.box = box;
      this.audio = box.querySelector("audio");
      this.known = Number(box.dataset.duration) || 0;
      this.channels = Math.min(2, Math.max(1, Number(box.dataset.channels) || 1));
      this.names = this.channels === 1 ? ["call (mono: both sides in one channel)"] : ["caller", "agent"];
      this.muted = this.names.map(() => false);
      this.solo = null;
      this.graph = null;
      this.pending = null;
      this.markers = [];
      this.words = [];
      this.segments = [];
      box.callvaultPlayer = this;  // the page's tests read the state (and the Web Audio gains) from here
      this.build();
      this.addMarkers(JSON.parse(box.dataset.markers || "[]"));
      const start = Number(box.dataset.start);
      if (start > 0) this.seek(start, false);
      this.audio.addEventListener("timeupdate", () => this.render());
      this.audio.addEventListener("seeked", () => this.render());
      this.audio.addEventListener("play", () => { this.render(); this.follow(); });
      this.audio.addEventListener("pause", () => this.render());
      this.audio.addEventListener("ratechange", () => { this.speed.value = String(this.audio.playbackRate); });
      this.audio.addEventListener("loadedmetadata", () => {
        if (this.pending !== null) { this.audio.currentTime = this.pending; this.pending = null; }
        this.drawTicks();
        this.placeMarkers();
        this.render();
      });
      this.applyGains();
      this.render();
    }

    length() {
      const d = this.audio.duration;
      return Number.isFinite(d) && d > 0 ? d : this.known;
    }

    position() {
      return this.pending !== null ? this.pending : this.audio.currentTime;
    }

    // ---------------------------------------------------------------------------- controls
    build() {
      this.audio.controls = false;  // ours replace the browser's (which stay when scripts are off)
      const bar = make("div", "player-controls");
      bar.setAttribute("role", "group");
      bar.setAttribute("aria-label", "Player");
      this.playButton = button("Play", null, () => this.toggle());
      this.playButton.id = "play";
      this.playButton.classList.remove("secondary");
      this.time = make("span", "player-time");
      this.time.id = "player-time";
      this.time.setAttribute("aria-live", "off");
      const speedLabel = make("label", "player-speed", "Speed ");
      this.speed = make("select");
      this.speed.id = "speed";
      SPEEDS.forEach((s) => {
        const option = make("option", null, s + "×");
        option.value = String(s);
        if (s === 1) option.selected = true;
        this.speed.appendChild(option);
      });
      this.speed.addEventListener("change", () => { this.audio.playbackRate = Number(this.speed.value); });
      speedLabel.appendChild(this.speed);
      bar.append(button("−5 s", "Back 5 seconds", () => this.seekBy(-STEP)), this.playButton,
                 button("+5 s", "Forward 5 seconds", () => this.seekBy(STEP)), this.time, speedLabel,
                 this.channelControls());
      this.axis = this.buildAxis();
      const wave = this.box.querySelector(".wave");
      this.audio.after(bar, this.axis);
      if (wave) this.enableWaveform(wave);
      document.addEventListener("keydown", (event) => this.key(event));
    }

    channelControls() {
      const group = make("fieldset", "player-channels");
      group.append(make("legend", null, this.channels === 1 ? "Channel" : "Channels"));
      this.channelButtons = this.names.map((name, i) => {
        const mute = button("Mute " + name.split(" ")[0], "Mute " + name, () => {
          this.muted[i] = !this.muted[i];
          this.applyGains();
        });
        mute.dataset.channel = String(i);
        group.append(mute);
        let solo = null;
        if (this.channels > 1) {
          solo = button("Solo " + name, null, () => {
            this.solo = this.solo === i ? null : i;
            this.applyGains();
          });
          group.append(solo);
        }
        return {mute, solo};
      });
      return group;
    }

    buildAxis() {
      const axis = make("div", "axis");
      this.markerLayer = make("div", "axis-markers");
      this.markerLayer.setAttribute("aria-hidden", "true");
      this.progress = make("div", "axis-progress");
      this.markerLayer.appendChild(this.progress);
      this.range = make("input");
      this.range.type = "range";
      this.range.id = "position";
      this.range.min = "0";
      this.range.step = "0.1";
      this.range.setAttribute("aria-label", "Position in the call");
      this.range.addEventListener("input", () => this.seek(Number(this.range.value), false));
      this.ticks = make("div", "axis-ticks");
      this.ticks.setAttribute("aria-hidden", "true");
      this.legend = make("ul", "axis-legend");
      this.legend.id = "markers";
      this.legend.setAttribute("aria-label", "Marked spans");
      axis.append(this.markerLayer, this.range, this.ticks, this.legend);
      this.drawTicks();
      return axis;
    }

    drawTicks() {
      const total = this.length();
      this.range.max = String(total || 0);
      this.ticks.replaceChildren();
      if (!total) return;
      const step = TICK_STEPS.find((s) => total / s <= 8) || TICK_STEPS[TICK_STEPS.length - 1];
      for (let t = 0; t <= total + 1e-6; t += step) {
        const tick = make("span", "tick", clock(t));
        tick.style.left = (100 * t / total) + "%";  // CSSOM, which the style-src policy allows
        this.ticks.appendChild(tick);
      }
    }

    // Pauses, gaps (from the page) and redactions (from the transcript): shaded spans on the axis and a
    // list of buttons that seek to each, so they are reachable without a mouse.
    addMarkers(list) {
      list.forEach((m) => {
        const span = make("div", "marker marker-" + m.kind);
        span.title = m.label + " " + clock(m.start) + "–" + clock(m.end);
        this.markerLayer.appendChild(span);
        const item = make("li", "marker-" + m.kind);
        item.append(button(clock(m.start) + "–" + clock(m.end), "Go to " + m.label + " at " + clock(m.start),
                           () => this.seek(m.start, false)),
                    document.createTextNode(" " + m.label));
        this.legend.appendChild(item);
        this.markers.push([m, span]);
      });
      this.placeMarkers();
    }

    placeMarkers() {
      const total = this.length();
      this.markers.forEach(([m, span]) => {
        span.hidden = !total;
        if (!total) return;
        span.style.left = (100 * Math.max(0, m.start) / total) + "%";
        span.style.width = Math.max(0.4, 100 * (Math.min(total, m.end) - Math.max(0, m.start)) / total) + "%";
      });
    }

    enableWaveform(wave) {
      const svg = wave.querySelector("svg");
      const cursor = svg && svg.querySelector(".cursor");
      if (!svg || !cursor) return;
      this.cursor = cursor;
      this.waveWidth = svg.viewBox.baseVal.width;
      svg.addEventListener("click", (event) => {
        const box = svg.getBoundingClientRect();
        this.seek(((event.clientX - box.left) / box.width) * this.length(), false);
      });
      wave.tabIndex = 0;
      wave.setAttribute("aria-label", "Waveform: left and right arrows seek 5 seconds");
    }

    // ---------------------------------------------------------------------------- actions
    toggle() {
      if (this.audio.paused) {
        this.ensureGraph();
        this.audio.play().catch(() => this.render());
      } else {
        this.audio.pause();
      }
    }

    seekBy(delta) {
      this.seek(this.position() + delta, false);
    }

    // A call not loaded yet (the review page loads nothing until asked) remembers where to start and
    // starts loading; the position is applied when the metadata arrives.
    seek(seconds, play) {
      const total = this.length();
      const t = Math.max(0, total ? Math.min(total, seconds) : seconds);
      if (this.audio.readyState === 0) {
        this.pending = t;
        if (this.audio.preload === "none") { this.audio.preload = "auto"; this.audio.load(); }
      } else {
        this.audio.currentTime = t;
      }
      if (play && this.audio.paused) this.toggle();
      this.render();
    }

    key(event) {
      if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
      if (event.key === " ") this.toggle();
      else if (event.key === "ArrowRight") this.seekBy(STEP);
      else if (event.key === "ArrowLeft") this.seekBy(-STEP);
      else return;
      event.preventDefault();
    }

    // Mute and solo act on the decoded channels through Web Audio (the <audio> element itself can only
    // mute everything): channel 0 is the caller and channel 1 the agent, callvault's stereo convention.
    ensureGraph() {
      const Context = window.AudioContext || window.webkitAudioContext;
      if (this.graph || !Context) {
        if (this.graph && this.graph.context.state === "suspended") this.graph.context.resume();
        return;
      }
      const context = new Context();
      const source = context.createMediaElementSource(this.audio);
      const gains = this.names.map(() => context.createGain());
      if (this.channels === 1) {
        source.connect(gains[0]).connect(context.destination);
      } else {
        const splitter = context.createChannelSplitter(2);
        const merger = context.createChannelMerger(2);
        source.connect(splitter);
        gains.forEach((gain, i) => { splitter.connect(gain, i); gain.connect(merger, 0, i); });
        merger.connect(context.destination);
      }
      this.graph = {context, gains};
      this.applyGains();
    }

    audible(i) {
      return this.solo !== null ? this.solo === i : !this.muted[i];
    }

    applyGains() {
      if ((this.solo !== null || this.muted.some(Boolean)) && !this.graph) this.ensureGraph();
      this.channelButtons.forEach(({mute, solo}, i) => {
        mute.setAttribute("aria-pressed", String(this.muted[i]));
        if (solo) solo.setAttribute("aria-pressed", String(this.solo === i));
      });
      if (this.graph) this.graph.gains.forEach((gain, i) => { gain.gain.value = this.audible(i) ? 1 : 0; });
      this.box.dataset.audible = this.names.filter((_, i) => this.audible(i)).map((n) => n.split(" ")[0]).join(",");
    }

    // ---------------------------------------------------------------------------- following playback
    follow() {
      if (this.following) return;
      this.following = true;
      const step = () => {
        this.render();
        if (this.audio.paused) { this.following = false; return; }
        window.requestAnimationFrame(step);
      };
      window.requestAnimationFrame(step);
    }

    render() {
      const t = this.position();
      const total = this.length();
      this.playButton.textContent = this.audio.paused ? "Play" : "Pause";
      this.playButton.setAttribute("aria-label", (this.audio.paused ? "Play" : "Pause") + " (Space)");
      this.time.textContent = clock(t, true) + " / " + clock(total);
      if (total) {
        this.range.max = String(total);
        this.range.value = String(t);
        this.progress.style.width = (100 * t / total) + "%";
      }
      if (this.cursor && total) {
        const x = (t / total) * this.waveWidth;
        this.cursor.setAttribute("x1", x);
        this.cursor.setAttribute("x2", x);
      }
      this.highlight(t);
      this.box.dispatchEvent(new CustomEvent("player:time", {detail: t}));
    }

    highlight(t) {
      this.segments.forEach(([start, end, li]) => {
        const now = t >= start && t < end;
        if (now && !li.classList.contains("current")) this.reveal(li);
        li.classList.toggle("current", now);
      });
      this.words.forEach(([start, end, span]) => span.classList.toggle("current", t >= start && t < end));
    }

    reveal(li) {
      const list = li.parentElement;
      if (!list) return;
      if (li.offsetTop < list.scrollTop || li.offsetTop + li.offsetHeight > list.scrollTop + list.clientHeight) {
        list.scrollTop = li.offsetTop - list.offsetTop;
      }
    }

    // ---------------------------------------------------------------------------- the transcript
    // Fetched from the transcript route with the page's purpose (decided and audited there). Each word
    // seeks when clicked; each segment's time is a button, for keyboards.
    async loadTranscript(section) {
      const status = section.querySelector("#tx-status");
      const list = section.querySelector("#tx-lines");
      let response;
      try {
        response = await fetch(section.dataset.src, {credentials: "same-origin", headers: {Accept: "application/json"}});
      } catch (err) {
        status.textContent = "The transcript could not be loaded.";
        return;
      }
      const body = await response.json().catch(() => ({}));
      if (response.status === 404) {
        status.textContent = "No transcript yet: transcription has not produced one for this call.";
        return;
      }
      if (!response.ok) {
        status.textContent = "Transcript not shown: " + (body.message || response.statusText);
        return;
      }
      status.textContent = body.redacted ? "Phone numbers, e-mails and account numbers are masked." : "";
      (body.segments || []).forEach((seg) => {
        const li = make("li", "speaker-" + seg.speaker);
        const at = make("button", "link", clock(seg.start));
        at.type = "button";
        at.setAttribute("aria-label", "Play from " + clock(seg.start));
        at.addEventListener("click", () => this.seek(seg.start, true));
        li.append(at, make("strong", null, " " + seg.speaker + ": "));
        const words = seg.words || [];
        if (!words.length) li.append(document.createTextNode(seg.text));
        words.forEach((w, i) => {
          const span = make("span", "word", w.text);
          span.dataset.start = String(w.start);
          span.addEventListener("click", () => this.seek(w.start, false));
          li.append(span);
          if (i < words.length - 1) li.append(document.createTextNode(" "));
          this.words.push([w.start, w.end, span]);
        });
        list.appendChild(li);
        this.segments.push([seg.start, seg.end, li]);
      });
      if (!this.segments.length) status.textContent = "The transcript is empty (nobody spoke, or it was all masked).";
      this.addMarkers((body.removed || []).map((r) => ({
        start: r.start, end: r.end, kind: "redaction", label: "redacted (" + r.kind.replace(/_/g, " ") + ", " + r.speaker + ")",
      })));
      section.dataset.loaded = "true";
      this.render();
    }
  }

  // Review comments: each comment's time seeks; the comment form's time follows playback until the
  // reviewer types one, so "Add comment" stamps the moment being heard; "Now" stamps it again.
  function enableComments(player) {
    document.querySelectorAll("button[data-seek]").forEach((b) => {
      b.addEventListener("click", () => player.seek(Number(b.dataset.seek), false));
    });
    const field = document.getElementById("at_seconds");
    if (!field) return;
    field.addEventListener("input", () => { field.dataset.typed = "true"; });
    player.box.addEventListener("player:time", (event) => {
      if (field.dataset.typed !== "true") field.value = clock(event.detail, true);
    });
    const now = document.getElementById("stamp-now");
    if (now) {
      now.hidden = false;
      now.addEventListener("click", () => {
        delete field.dataset.typed;
        field.value = clock(player.position(), true);
      });
    }
    field.value = clock(player.position(), true);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const box = document.getElementById("player-box");
    if (!box || !box.querySelector("audio")) return;
    const player = new Player(box);
    const transcript = document.getElementById("transcript");
    if (transcript && transcript.dataset.src) player.loadTranscript(transcript);
    enableComments(player);
  });
})();
