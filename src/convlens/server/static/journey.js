// The journey: the input, then every stage as a small picture with its shape, in one
// scrollable row.  Where the graph branches, an item says so: a merge lists its inputs
// ("+ a, b"), a stage fed by anything but the stage before it names its input ("↳ a").  Thumbnails are coloured here from 8-bit codes, so a change of
// colour map or range repaints them without asking the server.
import { codeTable, fmt, rangeFor, rgbImageData, scaleFor, toImageData } from "./colour.js";

const BOX = 112;      // the largest side of a thumbnail on screen, CSS pixels
const GAP = 1;

export class Journey {
  constructor(el, onSelect) {
    this.el = el;
    this.onSelect = onSelect;
    this.frame = null;
    this.items = [];
    this.selected = -1;
    el.addEventListener("keydown", (e) => this.key(e));
  }

  signature(frame) {
    return frame.header.stages.map((s) => `${s.name}:${s.shape}:${s.preview.h}x${s.preview.w}:${s.inputs}`).join("|");
  }

  // Show a new trace; the row is rebuilt only when the stages' structure changed.
  show(frame, colours) {
    const sig = this.signature(frame);
    const rebuild = sig !== this.sig;
    this.frame = frame;
    this.sig = sig;
    if (rebuild) this.build();
    this.paintInput();
    this.paint(colours);
  }

  build() {
    const { header } = this.frame;
    this.el.replaceChildren();
    this.items = [];
    const input = this.item(-1, "input", `${header.input.h}x${header.input.w}x3`, "what the model sees");
    this.inputCanvas = input.canvas;
    for (const s of header.stages) {
      const from = branchText(s, header.stages);
      const it = this.item(s.position, s.name, s.shape_str, `${s.kind} · ${s.op}` + (from ? ` · ${from.title}` : ""));
      if (from) {
        const f = document.createElement("span");
        f.className = "from";
        f.textContent = from.text;
        it.button.append(f);
        it.button.classList.add(from.merge ? "merge" : "branch");
      }
      if ((s.consumers || []).length > 1) it.button.classList.add("fork");
      this.items.push(it);
    }
    this.selected = Math.min(this.selected, header.stages.length - 1);
    this.mark();
  }

  item(pos, name, shape, sub) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "stage-item";
    b.dataset.position = pos;
    b.setAttribute("role", "option");
    b.tabIndex = pos === Math.max(this.selected, 0) ? 0 : -1;
    b.title = `${name} — ${sub}`;
    const canvas = document.createElement("canvas");
    canvas.className = "thumb";
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    const shp = document.createElement("span");
    shp.className = "shape";
    shp.textContent = shape;
    b.append(canvas, label, shp);
    b.setAttribute("aria-label", `${name}, ${sub}, output ${shape}`);
    if (pos >= 0) b.addEventListener("click", () => this.select(pos, true));
    this.el.append(b);
    return { button: b, canvas };
  }

  fit(canvas, w, h) {
    const s = Math.min(BOX / w, BOX / h, 8);
    canvas.style.width = `${Math.max(1, Math.round(w * s))}px`;
    canvas.style.height = `${Math.max(1, Math.round(h * s))}px`;
  }

  paintInput() {
    const { header, blobs } = this.frame;
    const { h, w } = header.input;
    const c = this.inputCanvas;
    c.width = w; c.height = h;
    c.getContext("2d").putImageData(rgbImageData(blobs[header.input.blob], w, h), 0, 0);
    this.fit(c, w, h);
  }

  paint(colours) {
    const { header, blobs } = this.frame;
    header.stages.forEach((s, k) => {
      const canvas = this.items[k].canvas;
      const p = s.preview;
      const codes = blobs[p.blob];
      if (s.spatial) this.paintGrid(canvas, s, p, codes, colours);
      else this.paintBars(canvas, s, p, codes, colours);
    });
  }

  paintGrid(canvas, s, p, codes, { norm, cmap, palette }) {
    const n = p.channels, cols = p.cols, rows = Math.ceil(n / cols);
    canvas.width = cols * (p.w + GAP) - GAP;
    canvas.height = rows * (p.h + GAP) - GAP;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#e5e7eb";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    const size = p.w * p.h;
    for (let c = 0; c < n; c++) {
      const [lo, hi] = rangeFor(norm, s, p.lo[c], p.hi[c], this.frame.header.global);
      const table = codeTable(p.lo[c], p.hi[c], scaleFor(lo, hi, cmap, palette), palette);
      const img = toImageData(codes.subarray(c * size, (c + 1) * size), p.w, p.h, table);
      ctx.putImageData(img, (c % cols) * (p.w + GAP), Math.floor(c / cols) * (p.h + GAP));
    }
    this.fit(canvas, canvas.width, canvas.height);
  }

  paintBars(canvas, s, p, codes, colours) {
    drawBars(canvas, s, p, codes, colours, this.frame.header.global, BOX, BOX / 2);
  }

  mark() {
    this.items.forEach((it, k) => {
      const on = k === this.selected;
      it.button.classList.toggle("selected", on);
      it.button.setAttribute("aria-selected", on ? "true" : "false");
      it.button.tabIndex = on || (this.selected < 0 && k === 0) ? 0 : -1;
    });
  }

  select(pos, focus = false) {
    if (!this.frame || pos < 0 || pos >= this.items.length) return;
    this.selected = pos;
    this.mark();
    const b = this.items[pos].button;
    b.scrollIntoView({ block: "nearest", inline: "nearest" });
    if (focus) b.focus();
    this.onSelect(pos);
  }

  key(e) {
    if (!this.frame) return;
    const n = this.items.length;
    let next = null;
    if (e.key === "ArrowRight") next = Math.min(n - 1, this.selected + 1);
    else if (e.key === "ArrowLeft") next = Math.max(0, this.selected - 1);
    else if (e.key === "Home") next = 0;
    else if (e.key === "End") next = n - 1;
    if (next !== null) { e.preventDefault(); this.select(next, true); }
  }
}

// A flat stage: one bar per value from the zero line, coloured by value, drawn at its
// display size.  Where there are more values than pixel columns, each column shows
// its value of largest magnitude, so no peak is lost.
export function drawBars(canvas, s, p, codes, { norm, cmap, palette }, globalRange, cssW, cssH) {
  const dpr = window.devicePixelRatio || 1;
  const W = Math.max(16, Math.round(cssW * dpr)), H = Math.max(8, Math.round(cssH * dpr));
  canvas.width = W;
  canvas.height = H;
  canvas.style.width = `${cssW}px`;
  canvas.style.height = `${cssH}px`;
  const n = codes.length;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, W, H);
  const [lo, hi] = rangeFor(norm, s, p.lo[0], p.hi[0], globalRange);
  const scale = scaleFor(lo, hi, cmap, palette);
  const table = codeTable(p.lo[0], p.hi[0], scale, palette);
  const top = Math.max(Math.abs(scale.vmin), Math.abs(scale.vmax)) || 1;
  const zero = scale.signed ? H / 2 : H - 1;
  const unit = scale.signed ? H / 2 - 1 : H - 2;
  const step = (p.hi[0] - p.lo[0]) / 255;
  const value = (i) => p.lo[0] + codes[i] * step;
  const bar = (i, x0, x1) => {
    const v = value(i);
    const hpx = Math.max(1, Math.round((Math.abs(v) / top) * unit));
    const c = table[codes[i]];
    ctx.fillStyle = `rgb(${c & 255},${(c >> 8) & 255},${(c >> 16) & 255})`;
    ctx.fillRect(x0, v >= 0 ? zero - hpx : zero, x1 - x0, hpx);
  };
  if (n <= W) {
    for (let i = 0; i < n; i++) {
      const x0 = Math.floor((i * W) / n), x1 = Math.floor(((i + 1) * W) / n);
      bar(i, x0, Math.max(x0 + 1, x1 - (x1 - x0 >= 3 ? 1 : 0)));
    }
  } else {
    for (let x = 0; x < W; x++) {
      const i0 = Math.floor((x * n) / W), i1 = Math.max(i0 + 1, Math.floor(((x + 1) * n) / W));
      let best = i0;
      for (let i = i0 + 1; i < i1; i++) if (Math.abs(value(i)) > Math.abs(value(best))) best = i;
      bar(best, x, x + 1);
    }
  }
  ctx.fillStyle = "#9ca3af";
  ctx.fillRect(0, Math.round(zero), W, 1);
  canvas.title = `${s.name}: ${p.n} values from ${fmt(p.lo[0])} to ${fmt(p.hi[0])}` +
    (p.sent && p.sent < p.n ? ` (first ${p.sent} shown)` : "");
}

const SYMBOLS = { add: "+", sub: "−", rsub: "−", mul: "×", div: "/", rdiv: "/", cat: "⧺", stack: "⧺",
  mean: "avg", max: "max", min: "min" };

// What an item says about the graph: null on the straight path (fed by the stage before).
export function branchText(s, stages) {
  const ins = s.inputs || [];
  const straight = ins.length === 1 && ins[0] === s.position - 1;
  if (straight || !ins.length) return null;
  const names = ins.map((p, i) => (p === -1 ? "input" : p === null ? `stage ${s.sources[i]}` : stages[p].name));
  // on the item, an input inside the same module is named from there ("conv2", not "layer1.4.conv2")
  const dot = s.name.lastIndexOf(".");
  const home = dot > 0 ? s.name.slice(0, dot + 1) : "";
  const short = names.map((n) => (home && n.startsWith(home) && n.length > home.length ? n.slice(home.length) : n));
  if (s.kind === "merge" || ins.length > 1) {
    const sym = SYMBOLS[s.merge] || "⋈";
    return { merge: true, text: `${sym} ${short.join(", ")}`, title: `${s.merge || "merge"} of ${names.join(", ")}` };
  }
  return { merge: false, text: `↳ ${short[0]}`, title: `fed by ${names[0]}` };
}
