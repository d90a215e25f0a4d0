// Reveal both responses together, at one pace set by the longer one, and allow a rating only
// once both are fully shown (votes before the end of streaming were a FastChat bug, #2091).
// Text is only ever assigned to textContent: nothing a model or a person wrote becomes markup.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("message-form");
  if (form) {
    form.addEventListener("submit", () => {
      document.getElementById("send").disabled = true;
      document.getElementById("waiting").hidden = false;
    });
  }
  const boxes = Array.from(document.querySelectorAll(".reveal"));
  if (!boxes.length) return;
  const buttons = Array.from(document.querySelectorAll("button.rate"));
  const full = boxes.map((b) => b.textContent);
  const longest = Math.max(1, ...full.map((t) => t.length));
  const durationMs = Math.min(4000, 300 + 8 * longest);  // ~125 characters a second, at most 4 s
  buttons.forEach((b) => { b.disabled = true; });
  boxes.forEach((b) => { b.textContent = ""; });
  const start = performance.now();
  function step(now) {
    const frac = Math.min(1, (now - start) / durationMs);
    boxes.forEach((b, i) => { b.textContent = full[i].slice(0, Math.ceil(frac * full[i].length)); });
    if (frac < 1) {
      requestAnimationFrame(step);
    } else {
      buttons.forEach((b) => { b.disabled = false; });
      document.getElementById("pair").dataset.revealed = "1";
    }
  }
  requestAnimationFrame(step);
});
