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

// The emergency banner counts down to the declaration's end (the server's minutes are right when the page
// loads; this keeps them right while it stays open). At zero it says so: the server refuses from then on.
// It counts the seconds the server gave on this page's own monotonic clock, never against the device's
// wall clock, which may be minutes off the server's.
function emergencyCountdown(banner) {
  const left = banner.querySelector("#emergency-left");
  const seconds = Number.parseInt(banner.dataset.secondsLeft ?? "", 10);
  if (!left || Number.isNaN(seconds)) return;
  const ends = performance.now() + seconds * 1000;
  const tick = () => {
    const minutes = Math.ceil((ends - performance.now()) / 60000);
    left.textContent = minutes > 0 ? `${minutes} minute${minutes === 1 ? "" : "s"} left` : "ended";
    if (minutes > 0) setTimeout(tick, 15000);
  };
  tick();
}

// The call player (waveform, transcript, markers, comments) lives in player.js, on the pages that play.

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.sortable").forEach(enableSorting);
  document.querySelectorAll("#emergency-banner[data-seconds-left]").forEach(emergencyCountdown);
  // "Print or save as PDF" (the compliance report): the browser's print dialog, styled by @media print.
  document.querySelectorAll("[data-print]").forEach((b) => b.addEventListener("click", () => window.print()));
});
