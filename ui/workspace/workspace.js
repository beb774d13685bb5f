// The grid of tiles and the keys (the default export).  Python passes {items, legend, tile_px,
// page_label, conflicts, ack, focus}; this module keeps the page's state, handles every key (the focus
// view's too, so the keys have one owner) and sends decisions, page and focus requests through the Outbox.

const INSTANCES = new WeakMap();
const GAP = 4, SIDE_PX = 152, MIN_PX = 64, MAX_PX = 320, FIT_MIN = 128, STEP = 16;
const KEYS_HELP = [["←↑↓→ / HJKL", "move"], ["Space / click", "in / out"], ["1-9", "give label"],
  ["A", "accept the rest"], ["D", "dubious"], ["U", "undo"], ["Enter / F", "focus view"],
  ["N / P", "next / previous page"], ["Esc", "clear selection"], ["shift / ctrl-click", "select"],
  ["+ / − / 0", "tile size / fit"]];

class Workspace {
  constructor(root) {
    this.root = root;
    this.items = []; this.index = new Map(); this.tiles = []; this.signature = "";
    this.server = new Map(); this.local = new Map(); this.out = new Set(); this.sel = new Set();
    this.conflicts = {}; this.legend = []; this.tilePx = 144; this.size = null; this.cols = 1;
    this.cursor = 0; this.anchor = 0; this.history = [];
    this.outbox = new Outbox(() => this.renderSync());
    this.wasActive = false; this.mounted = false;
    this.build();
    this.focusView = new FocusView(this);
    this.outbox.context = () => ({ focused: this.focusView.id });
    this.el.append(this.focusView.el);
  }

  build() {
    this.el = el("div", "vss-ws");
    this.el.tabIndex = 0;
    this.el.setAttribute("role", "application");
    this.el.setAttribute("aria-label", "Review tiles: arrow keys move, space in/out, 1-9 label, A accept");
    this.grid = el("div", "ws-grid");
    this.side = el("aside", "ws-side");
    this.title = el("div", "ws-title");
    this.counter = el("div", "ws-counter");
    this.keysState = el("div", "ws-keys-state");
    this.syncState = el("div", "ws-sync");
    this.flashLine = el("div", "ws-flash");
    this.legendBox = el("ol", "ws-legend");
    this.pageHint = el("div", "ws-page-hint");
    const sizeRow = el("div", "ws-size");
    const button = (text, title, fn) => keyButton(text, title, fn, () => this.focus());
    this.sizeLabel = el("span", "ws-size-label");
    sizeRow.append(button("−", "smaller tiles (−)", () => this.resize(-STEP)), this.sizeLabel,
      button("+", "larger tiles (+)", () => this.resize(STEP)), button("fit", "fit the page (0)", () => this.fit()));
    const help = el("dl", "ws-help");
    for (const [k, v] of KEYS_HELP) help.append(el("dt", "", k), el("dd", "", v));
    this.side.append(this.title, this.counter, this.pageHint, this.keysState, this.syncState, this.flashLine,
      this.legendBox, sizeRow, help);
    this.el.append(this.grid, this.side);
    this.root.appendChild(this.el);
    this.el.addEventListener("keydown", (e) => this.onKey(e));
    this.grid.addEventListener("click", (e) => this.onClick(e));
    this.el.addEventListener("mousedown", (e) => { if (e.target.tagName !== "INPUT") this.focus(); });
    this.el.addEventListener("focusin", () => this.setActive(true));
    this.el.addEventListener("focusout", (e) => {
      if (!this.el.contains(e.relatedTarget)) { this.setActive(false); this.outbox.schedule(true); }
    });
    this.onWindowResize = () => { this.layout(); this.reveal(); };
    window.addEventListener("resize", this.onWindowResize);
    // the tab hidden or the page going away: send what is pending now, not after the pause
    this.onHide = () => { if (document.visibilityState === "hidden") this.outbox.schedule(true); };
    this.onPageHide = () => this.outbox.schedule(true);
    document.addEventListener("visibilitychange", this.onHide);
    window.addEventListener("pagehide", this.onPageHide);
    // nothing has the focus (after the sidebar was opened or closed, say): the keys come here
    this.onStrayKey = (e) => {
      if (e.defaultPrevented || (e.target !== document.body && e.target !== document.documentElement)) return;
      this.onKey(e);
      if (e.defaultPrevented) this.focus();
    };
    document.addEventListener("keydown", this.onStrayKey);
    this.observer = new ResizeObserver(() => this.layout());
    this.observer.observe(this.el);
    this.setActive(false);
  }

  destroy() {  // unmounted: what is pending goes now (if the connection still takes it)
    try { this.outbox.schedule(true); } catch (err) { console.warn("workspace: unsent decisions", err); }
    this.outbox.stop();
    window.removeEventListener("resize", this.onWindowResize);
    document.removeEventListener("visibilitychange", this.onHide);
    window.removeEventListener("pagehide", this.onPageHide);
    document.removeEventListener("keydown", this.onStrayKey);
    this.observer.disconnect();
    this.el.remove();
  }

  // ---- data from Python ------------------------------------------------------------------------
  update(data, send) {
    this.outbox.send = send;
    const items = Array.isArray(data.items) ? data.items : [];
    this.legend = (Array.isArray(data.legend) ? data.legend : []).slice(0, 9).map(String);
    this.tilePx = Math.max(FIT_MIN, Number(data.tile_px) || 144);
    this.conflicts = data.conflicts && typeof data.conflicts === "object" ? data.conflicts : {};
    this.title.textContent = data.page_label || "Review";
    this.outbox.onAck(data.ack);
    for (const it of items) {
      const known = this.local.get(it.id);
      this.server.set(it.id, { status: it.status || "predicted", label: it.label ?? null, version: it.version });
      const moved = known && known.version !== it.version;
      if (known && !this.outbox.isUnacked(it.id) && (moved || this.conflicts[it.id])) this.local.delete(it.id);
    }
    const signature = items.map((it) => [it.id, it.version, it.suggestion, it.score, it.uncertain, it.src.length,
      it.src.slice(-32)].join("\u0001")).join("\u0002");
    const changed = signature !== this.signature;
    if (changed) this.setItems(items, signature);
    else this.items = items;
    this.focusView.receive(data.focus);
    this.renderLegend();
    this.renderAll();
    this.focusView.onItems();
    if (!this.mounted || changed || this.wasActive) this.takeFocus();
    this.mounted = true;
  }

  takeFocus() {  // on a new page of tiles, unless the user is typing somewhere else (or in the picker)
    const inner = this.el.getRootNode().activeElement;
    if (inner && this.el.contains(inner)) return;
    const active = document.activeElement;
    const typing = active && active !== document.body && !this.root.host?.contains(active) &&
      (active.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName));
    if (!typing) requestAnimationFrame(() => this.focus());
  }

  setItems(items, signature) {
    const keep = this.items[this.cursor] && this.items[this.cursor].id;
    this.items = items; this.signature = signature;
    this.index = new Map(items.map((it, i) => [it.id, i]));
    this.grid.replaceChildren();
    this.tiles = items.map((it, i) => {
      const tile = el("div", "tile");
      tile.dataset.idx = String(i); tile.dataset.id = it.id;
      const img = el("img"); img.alt = it.id; img.draggable = false; img.decoding = "async"; img.src = it.src;
      const cap = el("div", "cap");
      cap.append(el("span", "sugg", it.suggestion),
        el("span", "score", it.score == null ? "" : Number(it.score).toFixed(3)));
      const unsure = el("span", "unsure", "?");
      unsure.title = "uncertain suggestion";
      tile.append(img, unsure, cap, el("div", "badge"), el("div", "conflict"));
      tile.title = `${it.id}: ${it.suggestion}${it.score == null ? "" : " " + Number(it.score).toFixed(3)}`;
      this.grid.appendChild(tile);
      return tile;
    });
    for (const id of [...this.sel]) if (!this.index.has(id)) this.sel.delete(id);
    const at = keep !== undefined && this.index.has(keep) ? this.index.get(keep) : 0;
    this.cursor = Math.min(at, Math.max(0, items.length - 1));
    this.layout();
  }

  // ---- layout ----------------------------------------------------------------------------------
  layout() {
    const top = this.el.getBoundingClientRect().top;
    if (top >= 0 && top < window.innerHeight) {
      this.el.style.height = Math.max(320, Math.floor(window.innerHeight - top - 4)) + "px";
    }
    const gutter = this.grid.offsetWidth - this.grid.clientWidth;  // the reserved scrollbar
    const w = this.el.clientWidth - SIDE_PX - 8 - gutter, h = this.grid.clientHeight, n = this.items.length;
    if (w <= 0 || !h) return;
    const per = (room, s) => Math.max(1, Math.floor((room + GAP) / (s + GAP)));
    const fits = (s) => [per(w, s), per(h, s)];
    let size = this.size;
    if (size === null) {  // the largest tile side in [FIT_MIN, tile_px] that shows the most tiles
      let best = -1;
      for (let s = this.tilePx; s >= FIT_MIN; s--) {
        const [c, r] = fits(s);
        const shown = Math.min(n, c * r);
        if (shown > best) { best = shown; size = s; }
      }
    }
    this.cols = fits(size)[0];
    this.grid.style.flexBasis = `${this.cols * (size + GAP) - GAP + gutter}px`;
    this.grid.style.gridTemplateColumns = `repeat(${this.cols}, ${size}px)`;
    this.grid.style.gridAutoRows = `${size}px`;
    this.grid.style.setProperty("--tile", `${size}px`);
    this.sizeLabel.textContent = `${size} px${this.size === null ? " (fit)" : ""}`;
  }

  resize(delta) {
    const current = this.tiles[0] ? this.tiles[0].offsetWidth || this.tilePx : this.tilePx;
    this.size = Math.min(MAX_PX, Math.max(MIN_PX, current + delta));
    this.layout(); this.reveal();
  }

  fit() { this.size = null; this.layout(); this.reveal(); }

  // ---- views -----------------------------------------------------------------------------------
  view(id) {
    return this.local.get(id) || this.server.get(id) || { status: "predicted", label: null };
  }

  renderTile(i) {
    const tile = this.tiles[i], it = this.items[i];
    if (!tile || !it) return;
    const v = this.view(it.id), decided = isDecided(v), out = !decided && this.out.has(it.id);
    const conflict = this.conflicts[it.id];
    const cls = ["tile"];
    if (decided) cls.push("is-decided", v.status === "dubious" ? "is-dubious" : "is-accepted");
    if (out) cls.push("is-out");
    if (i === this.cursor) cls.push("is-cursor");
    if (this.sel.has(it.id)) cls.push("is-selected");
    if (it.uncertain) cls.push("is-uncertain");
    if (conflict) cls.push("has-conflict");
    tile.className = cls.join(" ");
    const badge = tile.children[3], box = tile.children[4];
    badge.textContent = decided ? (v.status === "dubious" ? "? dubious" : `✓ ${v.label ?? it.suggestion}`)
      : out ? "out" : "";
    box.textContent = conflict || "";
    box.title = conflict || "";
  }

  renderAll() {
    for (let i = 0; i < this.tiles.length; i++) this.renderTile(i);
    this.renderCounter(); this.renderSync();
  }

  renderCounter() {
    let decided = 0;
    for (const it of this.items) if (isDecided(this.view(it.id))) decided++;
    this.counter.textContent = `${decided} of ${this.items.length} decided on this page`;
    this.el.dataset.decided = String(decided);
    const done = this.items.every((it) => this.out.has(it.id) || isDecided(this.view(it.id)));
    this.pageHint.textContent = done ? "Page done: N for the next page" : "";
    this.el.dataset.pageDone = String(done);
    if (this.focusView) this.focusView.renderStatus();
  }

  renderSync() {
    const state = this.outbox.state();
    this.syncState.textContent = state.text;
    this.el.dataset.sync = state.busy ? "busy" : "idle";
    if (this.focusView) this.focusView.renderStatus();
  }

  renderLegend() {
    this.legendBox.replaceChildren(...this.legend.map((label, i) => {
      const li = el("li");
      li.append(el("kbd", "", String(i + 1)), el("span", "", label));
      return li;
    }));
  }

  setActive(on) {
    this.wasActive = on;
    this.el.classList.toggle("active", on);
    this.keysState.textContent = on ? "● keys active" : "○ click here to use keys";
  }

  focus() { this.el.focus({ preventScroll: true }); }

  flash(text) {
    if (this.focusView.open) this.focusView.flash(text);
    this.flashLine.textContent = text;
    clearTimeout(this.flashTimer);
    this.flashTimer = setTimeout(() => { this.flashLine.textContent = ""; }, 2500);
  }

  reveal() {
    const tile = this.tiles[this.cursor];
    if (tile) tile.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  // ---- input -----------------------------------------------------------------------------------
  onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (this.focusView.open ? this.focusView.onKey(e) : this.gridKey(e)) {
      e.preventDefault();
      e.stopPropagation();
    }
  }

  gridKey(e) {  // true when the key was the grid's
    const k = e.key, lower = k.length === 1 ? k.toLowerCase() : k;
    if (lower === "n" || k === "PageDown") return this.turnPage("next");
    if (lower === "p" || k === "PageUp") return this.turnPage("prev");
    if (lower === "u") { this.undo(); return true; }
    if (!this.items.length) return false;
    const moves = { ArrowLeft: -1, h: -1, ArrowRight: 1, l: 1, ArrowUp: -this.cols, k: -this.cols,
      ArrowDown: this.cols, j: this.cols };
    if (lower in moves) this.move(moves[lower], e.shiftKey);
    else if (k === " ") this.toggleOut(this.targets());
    else if (/^[1-9]$/.test(k)) this.giveLabel(Number(k) - 1);
    else if (lower === "a") this.acceptRest();
    else if (lower === "d") this.decideTargets("dubious", () => null);
    else if (k === "Enter" || lower === "f") this.focusView.openAt(this.cursor);
    else if (k === "Escape") this.clearSelection();
    else if (k === "+" || k === "=") this.resize(STEP);
    else if (k === "-" || k === "_") this.resize(-STEP);
    else if (k === "0") this.fit();
    else return false;
    return true;
  }

  turnPage(to) {  // the decisions still pending go first, then the page request (see Outbox)
    this.outbox.askPage(to);
    this.flash(to === "next" ? "next page…" : "previous page…");
    return true;
  }

  onClick(e) {
    const tile = e.target.closest(".tile");
    if (!tile) return;
    const i = Number(tile.dataset.idx), id = this.items[i].id;
    if (e.shiftKey) {
      const [a, b] = [Math.min(this.anchor, i), Math.max(this.anchor, i)];
      for (let j = a; j <= b; j++) this.sel.add(this.items[j].id);
      this.setCursor(i, false);
    } else if (e.ctrlKey || e.metaKey) {
      if (this.sel.has(id)) this.sel.delete(id); else this.sel.add(id);
      this.setCursor(i, true);
    } else {
      this.setCursor(i, true);
      this.toggleOut([id]);
    }
    this.renderAll();
  }

  setCursor(i, setAnchor) {
    const old = this.cursor;
    this.cursor = Math.max(0, Math.min(this.items.length - 1, i));
    if (setAnchor) this.anchor = this.cursor;
    this.renderTile(old); this.renderTile(this.cursor);
  }

  move(delta, extend) {
    const to = this.cursor + delta;
    if (to < 0 || to >= this.items.length) return;
    if (extend) { this.sel.add(this.items[this.cursor].id); this.sel.add(this.items[to].id); }
    this.setCursor(to, !extend);
    this.reveal();
  }

  targets() {
    if (this.sel.size) return this.items.filter((it) => this.sel.has(it.id)).map((it) => it.id);
    return [this.items[this.cursor].id];
  }

  clearSelection() {
    const ids = [...this.sel];
    this.sel.clear();
    for (const id of ids) this.renderTile(this.index.get(id));
  }
}

Object.assign(Workspace.prototype, ACTIONS);

export default function (component) {
  const { parentElement, data, setTriggerValue } = component;
  let ws = INSTANCES.get(parentElement);
  if (!ws) {
    ws = new Workspace(parentElement);
    INSTANCES.set(parentElement, ws);
  }
  ws.update(data || {}, setTriggerValue);
  return () => {
    ws.destroy();
    INSTANCES.delete(parentElement);
  };
}
