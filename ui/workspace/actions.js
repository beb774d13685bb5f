// The workspace's actions on tiles, each one undoable with U (mixed into Workspace in workspace.js).
const ACTIONS = {
  record(ids, change) {  // change(id) mutates the state of one tile; returns its queued entry or null
    const action = { changes: [], entries: [] };
    for (const id of ids) {
      const before = { local: this.local.get(id), out: this.out.has(id), view: this.view(id) };
      const entry = change(id);
      action.changes.push({ id, before });
      if (entry) action.entries.push(entry);
    }
    if (!action.changes.length) return;
    this.history.push(action);
    for (const id of ids) this.renderTile(this.index.get(id));
    this.renderCounter();
    if (action.entries.length) this.outbox.schedule(false);
  },

  toggleOut(ids) {
    const open = ids.filter((id) => !isDecided(this.view(id)));
    if (!open.length) { this.flash("decided already: U undoes"); return; }
    this.record(open, (id) => { if (this.out.has(id)) this.out.delete(id); else this.out.add(id); return null; });
  },

  decide(ids, status, labelOf, how) {
    this.record(ids, (id) => {
      const server = this.server.get(id) || {};
      const label = labelOf(id);
      this.local.set(id, { status, label, version: server.version });
      this.out.delete(id);
      return this.outbox.queue({ id, version: server.version ?? null, status, label, how });
    });
  },

  decideTargets(status, labelOf) {
    const ids = this.targets(), single = !this.sel.size;
    this.decide(ids, status, labelOf, "single");
    if (single) this.setCursor(this.cursor + 1, true); else this.clearSelection();
    this.reveal();
  },

  giveLabel(i) {
    if (i >= this.legend.length) { this.flash(`no label on key ${i + 1}`); return; }
    this.decideTargets("accepted", () => this.legend[i]);
  },

  acceptRest() {
    const ids = this.items.filter((it) => !this.out.has(it.id) && !isDecided(this.view(it.id))).map((it) => it.id);
    if (!ids.length) { this.flash("nothing left to accept"); return; }
    const suggestion = new Map(this.items.map((it) => [it.id, it.suggestion]));
    this.decide(ids, "accepted", (id) => suggestion.get(id), "page");
    this.outbox.schedule(true);
  },

  undo() {
    const action = this.history.pop();
    if (!action) { this.flash("nothing to undo"); return; }
    for (const { id, before } of action.changes.slice().reverse()) {
      if (before.local) this.local.set(id, before.local); else this.local.delete(id);
      if (before.out) this.out.add(id); else this.out.delete(id);
      this.renderTile(this.index.get(id));
    }
    let sent = 0;
    const befores = new Map(action.changes.map((c) => [c.id, c.before]));
    for (const entry of action.entries) {
      if (this.outbox.drop(entry)) continue;
      const view = befores.get(entry.id).view;  // sent already: ask Python to go back
      const back = isDecided(view) ? { status: view.status, label: view.label ?? null }
        : { status: "predicted", label: null };
      this.outbox.queue({ id: entry.id, version: entry.version, ...back, how: "undo" });
      sent++;
    }
    if (sent) this.outbox.undoCount++;
    this.flash(sent ? "undo sent" : "undone");
    this.renderCounter();
    this.outbox.schedule(false);
  }
};
