// Messages to Python, as trigger values, one in flight at a time: "batch" (decisions), "page" ({to}) and
// "focus" ({id}).  Each carries {client, seq}; seq grows with every message of this client.  Python
// acknowledges the last seq it got (data.ack) in the rerun the message caused; the next message goes only
// then, and one not acknowledged within a few seconds is sent again with the same seq (Python skips a seq
// it has seen).  One in flight at a time matters: two trigger values sent before a rerun picks them up
// are merged by Streamlit and only the newer survives.
// Order: a focus request first (someone is looking at the screen for it), then the decisions, and a page
// request only once no decision is left to send (no decision is lost when the page changes).

const DEBOUNCE_MS = 300, MAX_WAIT_MS = 1500, RESEND_MS = 4000;

class Outbox {
  constructor(onChange) {
    this.client = randomId(); this.seq = 0; this.send = () => {}; this.onChange = onChange;
    this.context = () => ({});  // sent with every message: {focused: the focus view's id or null}
    this.pending = []; this.unacked = new Map(); this.undoCount = 0;
    this.inflight = null;  // {event, value}
    this.pageWanted = null; this.focusWanted = null;
    this.due = false; this.firstPendingAt = 0; this.debounce = null; this.resend = null;
  }

  // ---- decisions -------------------------------------------------------------------------------
  queue(entry) {
    this.pending.push(entry);
    this.unacked.set(entry.id, (this.unacked.get(entry.id) || 0) + 1);
    return entry;
  }

  drop(entry) {  // take back a decision not sent yet; false when it has gone already
    const at = this.pending.indexOf(entry);
    if (at < 0) return false;
    this.pending.splice(at, 1);
    this.unqueue(entry.id);
    return true;
  }

  unqueue(id) {
    const n = (this.unacked.get(id) || 1) - 1;
    if (n > 0) this.unacked.set(id, n); else this.unacked.delete(id);
  }

  isUnacked(id) { return this.unacked.has(id); }

  // now: send the pending decisions at the first chance; else after a short pause in the keys
  schedule(now) {
    clearTimeout(this.debounce); this.debounce = null;
    if (now || !this.pending.length) {
      if (now) this.due = true;
      this.pump();
      return;
    }
    if (!this.firstPendingAt) this.firstPendingAt = performance.now();
    const wait = Math.max(0, Math.min(DEBOUNCE_MS, this.firstPendingAt + MAX_WAIT_MS - performance.now()));
    this.debounce = setTimeout(() => { this.debounce = null; this.due = true; this.pump(); }, wait);
    this.changed();
  }

  askPage(to) { this.pageWanted = to; this.schedule(true); }

  askFocus(id) { this.focusWanted = id; this.pump(); }

  // ---- sending ---------------------------------------------------------------------------------
  pump() {
    if (!this.inflight) {
      if (this.focusWanted !== null) {
        this.start("focus", { id: this.focusWanted });
        this.focusWanted = null;
      } else if (this.pending.length && (this.due || this.pageWanted)) {
        this.start("batch", { decisions: this.pending.splice(0), undo: this.undoCount });
        this.undoCount = 0;
      } else if (this.pageWanted && !this.pending.length) {
        this.start("page", { to: this.pageWanted });
        this.pageWanted = null;
      }
    }
    if (!this.pending.length) { this.due = false; this.firstPendingAt = 0; }
    this.changed();
  }

  start(event, body) {
    this.inflight = { event, value: { client: this.client, seq: ++this.seq, ...this.context(), ...body } };
    this.transmit(RESEND_MS);
  }

  transmit(wait) {  // again, same seq, until acknowledged; waiting longer each time
    clearTimeout(this.resend);
    try {
      this.send(this.inflight.event, this.inflight.value);
    } catch (err) {
      console.warn("workspace: could not send", err);  // sent again below
    }
    this.resend = setTimeout(() => { if (this.inflight) this.transmit(Math.min(2 * wait, 30000)); }, wait);
  }

  onAck(ack) {
    const sent = this.inflight;
    if (!sent || !ack || ack.client !== this.client || !(ack.seq >= sent.value.seq)) return;
    if (sent.event === "batch") for (const entry of sent.value.decisions) this.unqueue(entry.id);
    this.inflight = null;
    clearTimeout(this.resend);
    this.pump();
  }

  // ---- what the side panel shows ---------------------------------------------------------------
  state() {
    const sent = this.inflight, queued = this.pending.length;
    const sending = sent && sent.event === "batch" ? sent.value.decisions.length : 0;
    const turning = this.pageWanted || (sent && sent.event === "page");
    const text = sending ? `sending ${sending}…${queued ? ` (${queued} queued)` : ""}`
      : queued ? `${queued} queued` : "all saved";
    return { text: turning ? `${text} · turning the page…` : text, busy: Boolean(sent || queued || turning) };
  }

  changed() { this.onChange(); }

  stop() { clearTimeout(this.debounce); clearTimeout(this.resend); }
}
