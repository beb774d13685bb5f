// Review tile workspace (Streamlit Components v2, plain ES module, no build step).
// ui/workspace/__init__.py joins base.js, outbox.js, picker.js, focus.js and workspace.js (in that order)
// into one module: they share one scope; workspace.js has the default export.

const UNDECIDED = new Set(["", "predicted", "undecided"]);

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function randomId() {
  return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10);
}

function fmtScore(score) {
  return score === null || score === undefined || score === "" ? "" : Number(score).toFixed(3);
}

// a small button that never takes the keyboard focus away from the workspace
function keyButton(text, title, fn, after) {
  const b = el("button", "", text);
  b.type = "button"; b.title = title; b.tabIndex = -1;
  b.addEventListener("mousedown", (e) => e.preventDefault());
  b.addEventListener("click", (e) => { e.stopPropagation(); fn(); if (after) after(); });
  return b;
}

const isDecided = (view) => !UNDECIDED.has(view.status || "");
