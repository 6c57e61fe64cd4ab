// callvault: small progressive enhancements. Every page works without this file.
"use strict";

// Sort the rows of this page by a column (the server pages newest-first by keyset).
function enableSorting(table) {
  const heads = table.querySelectorAll("th");
  table.querySelectorAll("th button[data-sort]").forEach((button) => {
    button.addEventListener("click", () => {
      const col = Number(button.dataset.sort);
      const th = button.closest("th");
      const ascending = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach((h) => h.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const body = table.tBodies[0];
      const rows = Array.from(body.rows).filter((r) => r.cells.length > col);
      const key = (r) => r.cells[col].dataset.key || r.cells[col].textContent.trim();
      rows.sort((a, b) => key(a).localeCompare(key(b), undefined, {numeric: true}) * (ascending ? 1 : -1));
      rows.forEach((r) => body.appendChild(r));
    });
  });
}

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
}

// Waveform: a playback cursor, and click (or arrow keys) to seek.
function enableWaveform(wave, audio) {
  const svg = wave.querySelector("svg");
  const cursor = svg && svg.querySelector(".cursor");
  if (!svg || !cursor) return;
  const width = svg.viewBox.baseVal.width;
  const duration = () => audio.duration || Number(svg.dataset.duration) || 0;
  audio.addEventListener("timeupdate", () => {
    const x = duration() ? (audio.currentTime / duration()) * width : 0;
    cursor.setAttribute("x1", x);
    cursor.setAttribute("x2", x);
  });
  svg.addEventListener("click", (event) => {
    const box = svg.getBoundingClientRect();
    audio.currentTime = ((event.clientX - box.left) / box.width) * duration();
  });
  wave.tabIndex = 0;
  wave.setAttribute("aria-label", "Waveform: left and right arrows seek 5 seconds");
  wave.addEventListener("keydown", (event) => {
    if (event.key === "ArrowRight") audio.currentTime = Math.min(duration(), audio.currentTime + 5);
    else if (event.key === "ArrowLeft") audio.currentTime = Math.max(0, audio.currentTime - 5);
    else return;
    event.preventDefault();
  });
}

// Transcript: fetched from the transcript API with the same purpose (decided and audited there),
// highlighted in step with playback; a line's time button seeks to it.
async function loadTranscript(section, audio) {
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
  const items = [];
  (body.segments || []).forEach((seg) => {
    const li = document.createElement("li");
    li.className = "speaker-" + seg.speaker;
    const at = document.createElement("button");
    at.type = "button";
    at.className = "link";
    at.textContent = clock(seg.start);
    at.setAttribute("aria-label", "Play from " + clock(seg.start));
    at.addEventListener("click", () => { audio.currentTime = seg.start; audio.play(); });
    const who = document.createElement("strong");
    who.textContent = " " + seg.speaker + ": ";
    li.append(at, who, document.createTextNode(seg.text));
    list.appendChild(li);
    items.push([seg.start, seg.end, li]);
  });
  if (!items.length) status.textContent = "The transcript is empty (nobody spoke, or it was all masked).";
  audio.addEventListener("timeupdate", () => {
    const t = audio.currentTime;
    items.forEach(([start, end, li]) => li.classList.toggle("current", t >= start && t < end));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.sortable").forEach(enableSorting);
  const audio = document.getElementById("player");
  const wave = document.getElementById("wave");
  if (audio && wave) enableWaveform(wave, audio);
  const transcript = document.getElementById("transcript");
  if (audio && transcript) loadTranscript(transcript, audio);
  // "Print or save as PDF" (the compliance report): the browser's print dialog, styled by @media print.
  document.querySelectorAll("[data-print]").forEach((b) => b.addEventListener("click", () => window.print()));
});
