// The focus view: one tile's image large over the workspace, its neighbours, a label picker.  It opens at
// once with the grid's image and asks Python for the rest (a "focus" message); Python's answer comes as
// data.focus = {id, src, name, neighbors: [{label, score, src}], labels, ...} and is kept per id.
// A decision closes the view and the cursor goes on to the next tile, as a decision on the grid does:
// the grid is the fast path, the focus view the exception, and the next hard case is one Enter away.

const ZOOM_MAX = 16, ZOOM_STEP = 1.25, WHEEL_STEP = 1.0015, FOCUS_CACHE = 24;
const CONTRASTS = [1, 1.5, 2, 3, 0.6], BRIGHTNESS = [1, 1.3, 1.7, 0.7];
const FOCUS_HELP = [["1-9", "neighbour label"], ["A", "accept suggestion"], ["D", "dubious"],
  ["E or /", "type a label"], ["U", "undo"], ["← →", "previous / next tile"], ["+ − wheel, drag", "zoom, pan"],
  ["C / B", "contrast / brightness"], ["0", "reset view"], ["Esc", "back to the tiles"]];

class FocusView {
  constructor(ws) {
    this.ws = ws; this.id = null; this.index = -1; this.cache = new Map(); this.keyLabels = [];
    this.zoom = 1; this.panX = 0; this.panY = 0; this.contrast = 0; this.bright = 0; this.drag = null;
    this.build();
  }

  get open() { return this.id !== null; }

  build() {
    const after = () => this.ws.focus();
    this.el = el("div", "ws-focus");
    this.el.hidden = true;
    this.el.setAttribute("role", "dialog");
    this.el.setAttribute("aria-label", "Focus view: Escape goes back to the tiles");
    const head = el("div", "fv-head");
    this.name = el("span", "fv-name");
    this.status = el("span", "fv-status");
    this.flashLine = el("span", "fv-flash");
    this.sync = el("span", "fv-sync");
    head.append(this.name, this.status, this.flashLine, this.sync,
      keyButton("✕ Esc", "back to the tiles (Escape)", () => this.close()));
    this.stage = el("div", "fv-stage");
    this.img = el("img", "fv-img");
    this.img.alt = ""; this.img.draggable = false;
    this.readout = el("div", "fv-readout");
    this.stage.append(this.img, this.readout);
    const panel = el("div", "fv-panel");
    this.sugg = el("div", "fv-sugg");
    const actions = el("div", "fv-actions");
    this.acceptButton = keyButton("A accept", "accept the suggestion (A)", () => this.accept(), after);
    actions.append(this.acceptButton, keyButton("D dubious", "dubious (D)", () => this.decide("dubious", null), after),
      keyButton("U undo", "undo the last action (U)", () => this.ws.undo(), after));
    this.picker = new LabelPicker((label) => this.decide("accepted", label), () => this.ws.focus());
    this.keysBox = el("ol", "fv-keys");
    this.note = el("div", "fv-note");
    this.neighbors = el("div", "fv-neighbors");
    panel.append(this.sugg, actions, this.picker.el, this.keysBox, this.note, this.neighbors);
    const body = el("div", "fv-body");
    body.append(this.stage, panel);
    const help = el("div", "fv-help");
    for (const [k, v] of FOCUS_HELP) help.append(el("kbd", "", k), el("span", "", v));
    this.el.append(head, body, help);
    this.stage.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
    this.stage.addEventListener("pointerdown", (e) => this.onPointer(e));
    this.stage.addEventListener("pointermove", (e) => this.onPointer(e));
    this.stage.addEventListener("pointerup", (e) => this.onPointer(e));
    this.stage.addEventListener("pointercancel", (e) => this.onPointer(e));
  }

  // ---- opening, data ---------------------------------------------------------------------------
  openAt(i) {
    const it = this.ws.items[i];
    if (!it) return;
    this.id = it.id; this.index = i;
    this.zoom = 1; this.panX = 0; this.panY = 0;
    this.picker.reset(this.labels());  // empty for every image: nothing carried over
    this.el.hidden = false;
    this.ws.el.classList.add("focus-open");
    this.flashLine.textContent = "";
    this.render();
    this.ws.outbox.askFocus(it.id);
    this.ws.focus();
  }

  close() {
    if (!this.open) return;
    this.id = null; this.index = -1;
    this.el.hidden = true;
    this.ws.el.classList.remove("focus-open");
    this.ws.focus();
  }

  step(delta) {  // the previous / next tile, without deciding
    const to = this.index + delta;
    if (to < 0 || to >= this.ws.items.length) { this.ws.flash(delta > 0 ? "last tile" : "first tile"); return; }
    this.ws.setCursor(to, true);
    this.openAt(to);
  }

  receive(data) {  // Python's focus data (the same one comes again with every rerun)
    if (!data || typeof data !== "object" || data.id === undefined || data.id === null) return;
    const id = String(data.id), known = this.cache.get(id);
    const neighbors = (data.neighbors || []).map((n) => [n.label, n.score, (n.src || "").length]);
    const signature = JSON.stringify([(data.src || "").length, data.version, neighbors, (data.labels || []).length]);
    if (known && known.signature === signature) return;
    this.cache.delete(id);
    this.cache.set(id, { data, signature });
    while (this.cache.size > FOCUS_CACHE) this.cache.delete(this.cache.keys().next().value);
    if (this.id === id) this.render();
  }

  onItems() {  // the workspace's items changed: follow the tile, or close when it left the page
    if (!this.open) return;
    const i = this.ws.index.get(this.id);
    if (i === undefined) this.close(); else { this.index = i; this.render(); }
  }

  labels() {  // what the picker offers: Python's known labels, the legend, the neighbours' labels
    const data = this.open && this.cache.get(this.id) ? this.cache.get(this.id).data : null;
    const out = [];
    const add = (label) => { if (label && !out.includes(label)) out.push(String(label)); };
    for (const label of (data && data.labels) || []) add(label);
    for (const label of this.ws.legend) add(label);
    for (const n of (data && data.neighbors) || []) add(n.label);
    return out;
  }

  // ---- rendering -------------------------------------------------------------------------------
  render() {
    const it = this.ws.items[this.index];
    if (!it) return;
    const cached = this.cache.get(it.id), data = cached ? cached.data : null;
    const src = (data && data.src) || it.src;
    if (this.img.getAttribute("src") !== src) this.img.src = src;
    this.img.alt = it.id;
    this.name.textContent = (data && data.name) || it.id;
    this.name.title = it.id;
    this.sugg.replaceChildren(el("span", "fv-sugg-label", it.suggestion || "no suggestion"),
      el("span", "fv-sugg-score", fmtScore(it.score)));
    if (it.uncertain) this.sugg.append(el("span", "fv-unsure", "uncertain"));
    this.acceptButton.textContent = it.suggestion ? `A accept “${it.suggestion}”` : "A accept";
    this.renderNeighbors(data);
    this.picker.setLabels(this.labels());
    this.renderStatus();
    this.applyView();
  }

  renderNeighbors(data) {
    const neighbors = data && Array.isArray(data.neighbors) ? data.neighbors : null;
    this.keyLabels = [];
    for (const n of neighbors || []) if (n.label && !this.keyLabels.includes(n.label)) this.keyLabels.push(n.label);
    this.keyLabels = this.keyLabels.slice(0, 9);
    this.note.textContent = !neighbors ? "loading neighbours…" : neighbors.length ? "" : "no neighbours";
    this.keysBox.replaceChildren(...this.keyLabels.map((label, i) => {
      const li = el("li");
      li.append(el("kbd", "", String(i + 1)), el("span", "", label));
      return li;
    }));
    this.neighbors.replaceChildren(...(neighbors || []).map((n) => {
      const fig = el("figure", "fv-nb"), img = el("img");
      img.src = n.src || ""; img.alt = n.label || ""; img.draggable = false;
      const cap = el("figcaption"), k = this.keyLabels.indexOf(n.label);
      if (k >= 0) cap.append(el("kbd", "", String(k + 1)));
      cap.append(el("span", "fv-nb-label", n.label || "?"), el("span", "fv-nb-score", fmtScore(n.score)));
      fig.title = `${n.label || "?"} ${fmtScore(n.score)}`;
      fig.append(img, cap);
      return fig;
    }));
  }

  renderStatus() {
    if (!this.open) return;
    const it = this.ws.items[this.index];
    if (!it) return;
    const v = this.ws.view(it.id), conflict = this.ws.conflicts[it.id];
    this.status.textContent = conflict ? `⚠ ${conflict}`
      : !isDecided(v) ? "undecided" : v.status === "dubious" ? "? dubious" : `✓ ${v.label ?? it.suggestion}`;
    this.status.className = "fv-status" + (conflict ? " is-conflict" : isDecided(v) ? " is-decided" : "");
    const sync = this.ws.outbox.state();
    this.sync.textContent = `${this.index + 1} of ${this.ws.items.length} · ${sync.text}`;
  }

  flash(text) {
    this.flashLine.textContent = text;
    clearTimeout(this.flashTimer);
    this.flashTimer = setTimeout(() => { this.flashLine.textContent = ""; }, 2500);
  }

  // ---- zoom, pan, contrast ---------------------------------------------------------------------
  applyView() {
    this.img.style.transform = `translate(${this.panX}px, ${this.panY}px) scale(${this.zoom})`;
    this.img.style.filter = `contrast(${CONTRASTS[this.contrast]}) brightness(${BRIGHTNESS[this.bright]})`;
    this.readout.textContent = `zoom ×${+this.zoom.toFixed(2)} · contrast ×${CONTRASTS[this.contrast]}` +
      ` · brightness ×${BRIGHTNESS[this.bright]}`;
  }

  zoomBy(factor, mx = 0, my = 0) {  // about the point (mx, my) from the stage's centre
    const zoom = Math.max(1, Math.min(ZOOM_MAX, this.zoom * factor)), f = zoom / this.zoom;
    this.panX = zoom === 1 ? 0 : mx - (mx - this.panX) * f;
    this.panY = zoom === 1 ? 0 : my - (my - this.panY) * f;
    this.zoom = zoom;
    this.applyView();
  }

  resetView() { this.zoom = 1; this.panX = 0; this.panY = 0; this.contrast = 0; this.bright = 0; this.applyView(); }

  onWheel(e) {
    e.preventDefault();
    const r = this.stage.getBoundingClientRect();
    this.zoomBy(Math.pow(WHEEL_STEP, -e.deltaY), e.clientX - r.left - r.width / 2, e.clientY - r.top - r.height / 2);
  }

  onPointer(e) {
    if (e.type === "pointerdown" && e.button === 0) {
      this.drag = { x: e.clientX, y: e.clientY, panX: this.panX, panY: this.panY };
      this.stage.setPointerCapture(e.pointerId);
      this.stage.classList.add("is-dragging");
    } else if (e.type === "pointermove" && this.drag) {
      this.panX = this.drag.panX + e.clientX - this.drag.x;
      this.panY = this.drag.panY + e.clientY - this.drag.y;
      this.applyView();
    } else if (e.type === "pointerup" || e.type === "pointercancel") {
      this.drag = null;
      this.stage.classList.remove("is-dragging");
    }
  }

  // ---- keys and decisions ----------------------------------------------------------------------
  onKey(e) {  // true when the key was the focus view's; the picker's input never gets here
    const k = e.key, lower = k.length === 1 ? k.toLowerCase() : k;
    if (k === "Escape") this.close();
    else if (/^[1-9]$/.test(k)) this.neighborLabel(Number(k) - 1);
    else if (lower === "a") this.accept();
    else if (lower === "d") this.decide("dubious", null);
    else if (lower === "u") this.ws.undo();
    else if (lower === "e" || k === "/") this.picker.focus();
    else if (k === "+" || k === "=") this.zoomBy(ZOOM_STEP);
    else if (k === "-" || k === "_") this.zoomBy(1 / ZOOM_STEP);
    else if (k === "0") this.resetView();
    else if (lower === "c") { this.contrast = (this.contrast + 1) % CONTRASTS.length; this.applyView(); }
    else if (lower === "b") { this.bright = (this.bright + 1) % BRIGHTNESS.length; this.applyView(); }
    else if (k === "ArrowLeft" || k === "ArrowRight") this.step(k === "ArrowLeft" ? -1 : 1);
    else return false;
    return true;
  }

  neighborLabel(i) {
    if (!this.cache.has(this.id)) { this.flash("the neighbours are still loading"); return; }
    if (i >= this.keyLabels.length) { this.flash(`no neighbour label on key ${i + 1}`); return; }
    this.decide("accepted", this.keyLabels[i]);
  }

  accept() {
    const it = this.ws.items[this.index];
    if (!it || !it.suggestion) { this.flash("no suggestion to accept"); return; }
    this.decide("accepted", it.suggestion);
  }

  decide(status, label) {  // through the workspace's queue, how "single"; then back to the tiles
    const i = this.index, id = this.id;
    if (id === null) return;
    this.ws.decide([id], status, () => label, "single");
    this.close();
    this.ws.setCursor(i + 1, true);
    this.ws.reveal();
  }
}
