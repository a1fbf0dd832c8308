// How one output value is computed, as HTML, from the server's /explain answer
// (every number there comes from convlens.ops).
import { fmt } from "./colour.js";

const SHOW_CHANNELS = 3;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function matrix(values, opts = {}) {
  const t = el("table", "matrix");
  values.forEach((row, i) => {
    const tr = el("tr");
    row.forEach((v, j) => {
      const td = el("td", "", fmt(v));
      if (opts.pad && opts.pad(i, j)) td.classList.add("pad");
      if (opts.pick && opts.pick[0] === i && opts.pick[1] === j) td.classList.add("pick");
      tr.append(td);
    });
    t.append(tr);
  });
  if (opts.label) t.setAttribute("aria-label", opts.label);
  return t;
}

function valueLine(parts, value, captured) {
  const p = el("p", "equation");
  p.append(...parts.map((x) => (typeof x === "string" ? document.createTextNode(x) : x)));
  const out = el("output", "value", fmt(value));
  out.id = "arith-value";
  out.dataset.value = String(value);
  p.append(out);
  const cap = el("p", "captured", `the network computed ${fmt(captured)} here`);
  cap.dataset.value = String(captured);
  return [p, cap];
}

// `goto(position, channel)` opens another stage (the operands of a merge link to theirs).
export function renderArithmetic(box, a, goto = null) {
  const ar = a.arithmetic;
  box.replaceChildren();
  const head = el("p", "where",
    `${a.stage} · ${a.spatial === false || a.kind === "dense" || a.kind === "activation" && ar.type === "softmax" ? `unit ${a.col}` :
      `channel ${a.channel}, row ${a.row}, col ${a.col}`}`);
  box.append(head);
  const fn = { conv, pool, activation, norm, dense, softmax, merge, concat }[ar.type];
  if (fn) fn(box, ar, a, goto);
  else {
    box.append(el("p", "note", ar.note || "no arithmetic view for this stage"));
    if (ar.x !== undefined) box.append(el("p", "", `input value ${fmt(ar.x)}`));
    box.append(...valueLine(["value = "], a.captured, a.captured));
  }
  const rf = a.receptive_field;
  if (rf) {
    box.append(el("p", "rf", `receptive field: input rows ${rf.rows[0]}..${rf.rows[1]}, ` +
      `cols ${rf.cols[0]}..${rf.cols[1]} (${rf.size[0]}x${rf.size[1]}, ${rf.pixels.toLocaleString()} pixels inside the image)`));
  }
}

function conv(box, ar, a) {
  const [kh, kw] = ar.kernel;
  const [H, W] = ar.in_shape.slice(1);
  const padAt = (i, j) => {
    const r = ar.origin[0] + i * ar.dilation[0], c = ar.origin[1] + j * ar.dilation[1];
    return r < 0 || c < 0 || r >= H || c >= W;
  };
  box.append(el("p", "explain",
    `${kh}x${kw} window of ${a.input_name} × kernel, summed over ${ar.in_channels} input channel${ar.in_channels > 1 ? "s" : ""}` +
    `${ar.has_bias ? ", plus the bias" : ""}` + (ar.groups > 1 ? ` (groups=${ar.groups})` : "") + "."));
  const n = Math.min(SHOW_CHANNELS, ar.shown);
  for (let k = 0; k < n; k++) {
    const row = el("div", "conv-row");
    const ch = ar.first_in_channel + k;
    row.append(el("span", "ch", `in ${ch}`),
      matrix(ar.window[k], { pad: padAt, label: `input window, channel ${ch}` }), el("span", "op", "×"),
      matrix(ar.weights[k], { label: `kernel, channel ${ch}` }), el("span", "op", "→"),
      el("span", "sum", fmt(ar.products[k].flat().reduce((s, v) => s + v, 0))));
    box.append(row);
  }
  if (ar.in_channels > n) {
    const sums = ar.channel_sums.slice(0, 8).map((v, i) => `in ${ar.sum_channels[i]}: ${fmt(v)}`).join(", ");
    box.append(el("p", "sums", `largest channel sums of ${ar.in_channels}: ${sums}${ar.in_channels > 8 ? ", …" : ""}`));
  }
  const parts = [`Σ ${ar.in_channels} channel sum${ar.in_channels > 1 ? "s" : ""} = ${fmt(ar.sum)}`];
  if (ar.has_bias) parts.push(` + bias ${fmt(ar.bias)}`);
  parts.push(" = ");
  box.append(...valueLine(parts, ar.value, a.captured));
}

function pool(box, ar, a) {
  const pick = ar.pick;
  box.append(el("p", "explain", ar.mode === "max"
    ? `${ar.size[0]}x${ar.size[1]} window of ${a.input_name}, channel ${a.channel}: the largest value wins.`
    : `${ar.size[0]}x${ar.size[1]} window of ${a.input_name}, channel ${a.channel}: the mean of ${ar.count} values.`));
  box.append(matrix(ar.window, { pad: (i, j) => ar.in_padding[i][j], pick, label: "pooling window" }));
  box.append(...valueLine([ar.mode === "max" ? "max = " : `sum / ${ar.count} = `], ar.value, a.captured));
}

const FORMULAS = {
  relu: "max(0, x)", relu6: "min(max(0, x), 6)", sigmoid: "1 / (1 + e^−x)", tanh: "tanh(x)",
  leaky_relu: "x if x ≥ 0 else α·x", elu: "x if x > 0 else α·(e^x − 1)", identity: "x",
  gelu: "x·Φ(x)", silu: "x / (1 + e^−x)", softplus: "ln(1 + e^x)", selu: "λ·(x if x > 0 else α·(e^x − 1))",
  binary_step: "1 if x ≥ 0 else 0", arctan: "arctan(x)",
};

function activation(box, ar, a) {
  box.append(el("p", "explain", `${ar.function}(x) = ${FORMULAS[ar.function] || ar.function + "(x)"}` +
    (ar.alpha !== undefined ? `, α = ${fmt(ar.alpha)}` : "") + `, applied to each value of ${a.input_name}.`));
  box.append(...valueLine([`${ar.function}(${fmt(ar.x)}) = `], ar.value, a.captured));
}

function norm(box, ar, a) {
  box.append(el("p", "explain", `batch norm of ${a.input_name}, channel ${a.channel}: (x − mean) / √(var + ε) × γ + β`));
  box.append(...valueLine([`(${fmt(ar.x)} − ${fmt(ar.mean)}) / √(${fmt(ar.var)} + ${fmt(ar.eps)}) × ${fmt(ar.gamma)} + ${fmt(ar.beta)} = `],
    ar.value, a.captured));
}

function dense(box, ar, a) {
  box.append(el("p", "explain", `unit ${a.col}: Σ weight × input over ${ar.n_inputs} inputs of ${a.input_name}, plus the bias. Largest terms:`));
  const t = el("table", "terms");
  for (const term of ar.terms) {
    const tr = el("tr");
    tr.append(el("td", "", `in ${term.input}`), el("td", "", `${fmt(term.x)} × ${fmt(term.w)}`), el("td", "", `= ${fmt(term.product)}`));
    t.append(tr);
  }
  box.append(t);
  box.append(...valueLine([`Σ = ${fmt(ar.sum)} + bias ${fmt(ar.bias)} = `], ar.value, a.captured));
}

function softmax(box, ar, a) {
  box.append(el("p", "explain", `softmax: e^(x − max) / Σ e^(x − max) over every unit of ${a.input_name}.`));
  box.append(...valueLine([`e^(${fmt(ar.x)} − ${fmt(ar.max)}) / ${fmt(ar.denominator)} = `], ar.value, a.captured));
}

// A link to a stage (a button: it selects the stage in the page), or plain text for the
// model input, a constant or a stage the trace does not hold.
export function stageLink(name, position, goto, channel = null, cls = "stage-link") {
  if (position === null || position === undefined || position < 0 || !goto) {
    return el("span", "stage-ref", name);
  }
  const b = el("button", cls, name);
  b.type = "button";
  b.dataset.position = position;
  if (channel !== null) b.dataset.channel = channel;
  b.title = `open ${name}` + (channel !== null ? `, channel ${channel}` : "");
  b.addEventListener("click", () => goto(position, channel));
  return b;
}

const MERGE_TEXT = {
  add: (n) => `the sum of its ${n} operands`, mul: (n) => `the product of its ${n} operands`,
  sub: () => "its first operand minus the next", rsub: () => "its first operand minus the next",
  div: () => "its first operand divided by the next", rdiv: () => "its first operand divided by the next",
  mean: (n) => `the mean of its ${n} operands`, max: (n) => `the largest of its ${n} operands`,
  min: (n) => `the smallest of its ${n} operands`,
};

function where(o) {
  if (o.constant) return o.shape && o.shape.length ? `constant of shape ${o.shape.join("x")}` : "constant";
  if (!o.index) return "";
  const at = o.index.length === 3
    ? `channel ${o.index[0]}, row ${o.index[1]}, col ${o.index[2]}`
    : o.index.length === 1 ? `unit ${o.index[0]}` : `at ${o.index.join(", ")}`;
  return at + (o.broadcast ? ` (its ${o.shape.join("x")} output broadcast)` : "");
}

function merge(box, ar, a, goto) {
  const n = ar.operands.length;
  const text = MERGE_TEXT[ar.operation];
  box.append(el("p", "explain", ar.operation
    ? `${a.op}: each value is ${text ? text(n) : ar.operation} at the same position.`
    : ar.note));
  const t = el("table", "operands");
  ar.operands.forEach((o, i) => {
    const tr = el("tr");
    tr.dataset.operand = i;
    const name = el("td");
    name.append(o.constant ? el("span", "stage-ref", o.name) : stageLink(o.name, o.position, goto,
      o.index && o.index.length === 3 ? o.index[0] : null));
    const v = el("td", "num", o.value === null ? "—" : fmt(o.value));
    if (o.value !== null) v.dataset.value = String(o.value);
    tr.append(el("td", "sym", i === 0 ? "" : ar.symbol || ","), name, el("td", "at", o.note || where(o)), v);
    t.append(tr);
  });
  box.append(t);
  if (ar.value === undefined) {
    if (ar.operation) box.append(el("p", "note", ar.note));
    box.append(...valueLine(["value = "], a.captured, a.captured));
    return;
  }
  const vals = ar.operands.map((o) => fmt(o.value));
  let lhs;
  if (ar.operation === "mean") lhs = `(${vals.join(" + ")}) / ${n} = `;
  else if (ar.operation === "max" || ar.operation === "min") lhs = `${ar.operation}(${vals.join(", ")}) = `;
  else lhs = `${vals.join(` ${ar.symbol} `)} = `;
  box.append(...valueLine([lhs], ar.value, a.captured));
}

function concat(box, ar, a, goto) {
  const what = ar.axis === "channel" ? "channels" : ar.axis === "unit" ? "units" : ar.axis + "s";
  const joined = ar.operation === "stack" ? "stacked along a new dimension" : `joined along the ${what}`;
  const p = el("p", "explain", `${a.op}: its inputs ${joined}: `);
  ar.parts.forEach((part, i) => {
    if (i) p.append(", ");
    p.append(stageLink(part.name, part.position, goto), ` (${ar.axis} ${part.start}` +
      (part.stop - part.start > 1 ? `..${part.stop - 1}` : "") + ")");
  });
  p.append(".");
  box.append(p);
  const src = ar.source;
  const eq = el("p", "equation join");
  const target = ar.axis === "channel" ? src.at : null;
  eq.append(`${ar.axis} ${ar.at} is ${ar.operation === "stack" ? "" : `${ar.axis} ${src.at} of `}`,
    stageLink(src.name, src.position, goto, target), ": ");
  const out = el("output", "value", fmt(ar.value));
  out.id = "arith-value";
  out.dataset.value = String(ar.value);
  eq.append(out);
  eq.dataset.source = src.name;
  box.append(eq);
  const cap = el("p", "captured", `the network computed ${fmt(a.captured)} here`);
  cap.dataset.value = String(a.captured);
  box.append(cap);
}
