// The focus view's type-ahead label picker: an input that filters the known labels; Up/Down choose,
// Enter applies, a label that is not known yet can be typed.  Keys typed into it are text only: none of
// them reaches the workspace's key handler.  Escape leaves the input (onLeave).

class LabelPicker {
  constructor(onPick, onLeave) {
    this.onPick = onPick; this.onLeave = onLeave;
    this.labels = []; this.active = 0; this.shown = [];
    this.el = el("div", "fv-picker");
    this.input = el("input", "fv-input");
    this.input.type = "text";
    this.input.placeholder = "type a label (E)…";
    this.input.autocomplete = "off";
    this.input.spellcheck = false;
    this.input.setAttribute("aria-label", "label");
    this.list = el("ul", "fv-options");
    this.list.setAttribute("role", "listbox");
    this.el.append(this.input, this.list);
    this.input.addEventListener("keydown", (e) => this.onKey(e));
    for (const type of ["keyup", "keypress"]) this.input.addEventListener(type, (e) => e.stopPropagation());
    this.input.addEventListener("input", () => { this.active = 0; this.render(); });
    this.list.addEventListener("mousedown", (e) => e.preventDefault());  // keep the input's focus
    this.list.addEventListener("click", (e) => {
      const li = e.target.closest("li");
      if (li) this.pick(Number(li.dataset.i));
    });
  }

  reset(labels) {  // a new image: empty, nothing chosen
    this.input.value = "";
    this.active = 0;
    this.setLabels(labels);
  }

  setLabels(labels) { this.labels = labels; this.render(); }

  focus() { this.input.focus({ preventScroll: true }); }

  hasFocus() { return this.el.getRootNode().activeElement === this.input; }

  options() {
    const typed = this.input.value.trim(), q = typed.toLowerCase();
    if (!q) return this.labels.map((label) => ({ label, isNew: false }));
    const exact = [], starts = [], contains = [];
    for (const label of this.labels) {
      const low = label.toLowerCase();
      if (low === q) exact.push(label);
      else if (low.startsWith(q)) starts.push(label);
      else if (low.includes(q)) contains.push(label);
    }
    const out = [...exact, ...starts, ...contains].map((label) => ({ label, isNew: false }));
    if (!exact.length) out.push({ label: typed, isNew: true });
    return out;
  }

  render() {
    this.shown = this.options();
    this.active = Math.max(0, Math.min(this.active, this.shown.length - 1));
    this.list.replaceChildren(...this.shown.map((o, i) => {
      const li = el("li", i === this.active ? "is-active" : "", o.isNew ? `+ new label “${o.label}”` : o.label);
      li.dataset.i = String(i);
      li.setAttribute("role", "option");
      if (o.isNew) li.classList.add("is-new");
      return li;
    }));
    const li = this.list.children[this.active];
    if (li) li.scrollIntoView({ block: "nearest" });
  }

  onKey(e) {
    e.stopPropagation();  // text only: A, D, E, 1-9 ... typed here never act on the workspace
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      const n = this.shown.length;
      if (n) { this.active = (this.active + (e.key === "ArrowDown" ? 1 : n - 1)) % n; this.render(); }
    } else if (e.key === "Enter") {
      e.preventDefault();
      this.pick(this.active);
    } else if (e.key === "Escape") {
      e.preventDefault();
      this.onLeave();
    }
  }

  pick(i) {
    const option = this.shown[i];
    if (option && option.label) this.onPick(option.label);
  }
}
