// The toy-network editor: a list of steps (conv, activation, pool) written out in
// convlens' spec language ("conv(3, 3x3) relu maxpool(3)"), which the server parses.

const ACTIVATIONS = ["relu", "sigmoid", "tanh", "leakyrelu", "elu", "selu", "gelu", "silu",
  "softplus", "relu6", "linear"];
const PADDINGS = ["valid", "same", "1", "2", "3"];

export const DEFAULT_STEPS = [
  { type: "conv", filters: 3, kernel: 3, stride: 1, padding: "valid" },
  { type: "act", fn: "relu" },
  { type: "pool", mode: "max", size: 3, stride: 0 },
  { type: "conv", filters: 3, kernel: 3, stride: 1, padding: "valid" },
  { type: "act", fn: "relu" },
  { type: "pool", mode: "max", size: 2, stride: 0 },
];

function stepText(s) {
  if (s.type === "conv") {
    let t = `conv(${s.filters}, ${s.kernel}x${s.kernel}`;
    if (s.stride !== 1) t += `, stride=${s.stride}`;
    if (s.padding !== "valid") t += `, padding=${s.padding}`;
    return t + ")";
  }
  if (s.type === "pool") {
    let t = `${s.mode}pool(${s.size}`;
    if (s.stride && s.stride !== s.size) t += `, stride=${s.stride}`;
    return t + ")";
  }
  return s.fn;
}

// The names convlens gives the layers: conv1, relu1, maxpool1, ...
function names(steps) {
  const counts = {};
  return steps.map((s) => {
    const base = s.type === "conv" ? "conv" : s.type === "pool" ? `${s.mode}pool`
      : ({ leakyrelu: "leaky_relu", linear: "identity" }[s.fn] || s.fn);
    counts[base] = (counts[base] || 0) + 1;
    return `${base}${counts[base]}`;
  });
}

export class Editor {
  constructor(root, onChange) {
    this.root = root;
    this.list = root.querySelector("#steps");
    this.seed = root.querySelector("#seed");
    this.specText = root.querySelector("#spec-text");
    this.onChange = onChange;
    this.steps = DEFAULT_STEPS.map((s) => ({ ...s }));
    root.querySelector("#add-conv").addEventListener("click", () =>
      this.add({ type: "conv", filters: 3, kernel: 3, stride: 1, padding: "valid" }));
    root.querySelector("#add-act").addEventListener("click", () => this.add({ type: "act", fn: "relu" }));
    root.querySelector("#add-pool").addEventListener("click", () =>
      this.add({ type: "pool", mode: "max", size: 2, stride: 0 }));
    this.seed.addEventListener("input", () => { if (this.seed.checkValidity() && this.seed.value !== "") this.changed(); });
    this.render();
  }

  spec() { return this.steps.map(stepText).join(" "); }
  seedValue() { return Math.max(0, parseInt(this.seed.value || "0", 10) || 0); }

  changed() {
    this.specText.textContent = this.spec();
    this.onChange();
  }

  add(step) {
    this.steps.push(step);
    this.render();
    this.changed();
    const rows = this.list.querySelectorAll("li");
    rows[rows.length - 1]?.querySelector("input, select")?.focus();
  }

  remove(k) {
    this.steps.splice(k, 1);
    this.render();
    this.changed();
    const rows = this.list.querySelectorAll("li");
    (rows[Math.min(k, rows.length - 1)]?.querySelector("button.remove") || this.root.querySelector("#add-conv")).focus();
  }

  number(label, value, min, max, set) {
    const w = document.createElement("label");
    w.className = "field";
    const span = document.createElement("span");
    span.textContent = label.split(" ").slice(1).join(" ").replace("kernel size", "kernel");
    const input = document.createElement("input");
    input.type = "number";
    input.min = min; input.max = max; input.step = 1;
    input.value = value;
    input.setAttribute("aria-label", label);
    input.addEventListener("input", () => {
      const v = Number(input.value);
      if (input.value === "" || !Number.isInteger(v) || v < min || v > max) {
        input.setAttribute("aria-invalid", "true");
        return;
      }
      input.removeAttribute("aria-invalid");
      set(v);
      this.changed();
    });
    w.append(span, input);
    return w;
  }

  select(label, value, options, set) {
    const w = document.createElement("label");
    w.className = "field";
    const span = document.createElement("span");
    span.textContent = label.split(" ").slice(1).join(" ");
    const sel = document.createElement("select");
    sel.setAttribute("aria-label", label);
    for (const o of options) sel.append(new Option(o, o, false, o === value));
    sel.addEventListener("change", () => { set(sel.value); this.render(); this.changed(); });
    w.append(span, sel);
    return w;
  }

  render() {
    const nm = names(this.steps);
    this.list.replaceChildren();
    this.steps.forEach((s, k) => {
      const li = document.createElement("li");
      li.className = `step ${s.type}`;
      const title = document.createElement("span");
      title.className = "step-name";
      title.textContent = nm[k];
      li.append(title);
      const n = nm[k];
      if (s.type === "conv") {
        li.append(
          this.number(`${n} filters`, s.filters, 1, 512, (v) => { s.filters = v; }),
          this.number(`${n} kernel size`, s.kernel, 1, 31, (v) => { s.kernel = v; }),
          this.number(`${n} stride`, s.stride, 1, 16, (v) => { s.stride = v; }),
          this.select(`${n} padding`, s.padding, PADDINGS, (v) => { s.padding = v; }));
      } else if (s.type === "pool") {
        li.append(
          this.select(`${n} mode`, s.mode, ["max", "avg"], (v) => { s.mode = v; }),
          this.number(`${n} size`, s.size, 1, 32, (v) => { s.size = v; }),
          this.number(`${n} stride`, s.stride || s.size, 1, 32, (v) => { s.stride = v; }));
      } else {
        li.append(this.select(`${n} function`, s.fn, ACTIVATIONS, (v) => { s.fn = v; }));
      }
      const rm = document.createElement("button");
      rm.type = "button";
      rm.className = "remove";
      rm.textContent = "×";
      rm.setAttribute("aria-label", `remove ${n}`);
      rm.addEventListener("click", () => this.remove(k));
      li.append(rm);
      this.list.append(li);
    });
    this.specText.textContent = this.spec();
  }
}
