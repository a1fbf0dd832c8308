// The channel view: one channel large.  Pointing at a value (mouse, or arrow keys on
// the focused picture) asks the server how it was computed; its receptive field is
// drawn on the input and the arithmetic is written out with the real numbers.
import { channelsURL, explainURL, getFrame, getJSON } from "./api.js";
import { renderArithmetic } from "./arithmetic.js";
import { codeTable, drawColorbar, rangeFor, rgbImageData, scaleFor, toImageData } from "./colour.js";
import { drawBars } from "./journey.js";

const BOX = 216;

function fitCSS(canvas, w, h, box = BOX) {
  const s = Math.min(box / w, box / h, 16);
  canvas.style.width = `${Math.max(1, Math.round(w * s))}px`;
  canvas.style.height = `${Math.max(1, Math.round(h * s))}px`;
}

export class ChannelView {
  constructor(root, onError, goto = null) {
    this.root = root;
    this.onError = onError;
    this.goto = goto;
    this.title = root.querySelector("#channel-title");
    this.canvas = root.querySelector("#channel-canvas");
    this.marks = root.querySelector("#channel-marks");
    this.input = root.querySelector("#input-canvas");
    this.overlay = root.querySelector("#input-overlay");
    this.bar = root.querySelector("#channel-bar");
    this.box = root.querySelector("#arithmetic");
    this.heat = null;
    this.inflight = false;
    this.pending = null;
    this.canvas.addEventListener("mousemove", (e) => this.hover(e));
    this.canvas.addEventListener("click", (e) => this.hover(e));
    this.canvas.addEventListener("keydown", (e) => this.key(e));
  }

  clear(message) {
    this.stage = null;
    this.title.textContent = message || "Pick a channel in the stage view";
    this.box.replaceChildren();
    for (const c of [this.canvas, this.marks]) { c.width = 1; c.height = 1; }
    this.root.classList.add("empty");
  }

  setInput(frame) {
    const { header, blobs } = frame;
    const { h, w } = header.input;
    this.inputHW = [h, w];
    this.input.width = w; this.input.height = h;
    this.input.getContext("2d").putImageData(rgbImageData(blobs[header.input.blob], w, h), 0, 0);
    fitCSS(this.input, w, h);
    fitCSS(this.overlay, w, h);
    const dpr = window.devicePixelRatio || 1;
    this.overlay.width = Math.round(parseFloat(this.overlay.style.width) * dpr);
    this.overlay.height = Math.round(parseFloat(this.overlay.style.height) * dpr);
    this.drawOverlay();
  }

  async show(traceId, stage, channel, globalRange, colours, unit = null) {
    this.traceId = traceId;
    this.stage = stage;
    this.channel = channel;
    this.globalRange = globalRange;
    this.colours = colours;
    this.root.classList.remove("empty");
    this.rf = null;
    this.box.replaceChildren();
    this.drawOverlay();
    const s = stage;
    this.title.textContent = s.spatial
      ? `${s.name} · channel ${channel} of ${s.shape[0]} · ${s.shape[1]}x${s.shape[2]}`
      : `${s.name} · ${s.shape[0]} values`;
    try {
      const fr = await getFrame(channelsURL(traceId, s.position, s.spatial ? channel : 0, 1, 0));
      if (this.stage !== s || this.channel !== channel) return;
      this.data = fr;
      this.paint();
      const [h, w] = s.spatial ? [fr.header.h, fr.header.w] : [1, fr.header.n];
      if (unit !== null) this.pos = [0, unit];
      else if (!s.spatial) this.pos = [0, fr.blobs[0].reduce((b, q, i, a) => (q > a[b] ? i : b), 0)];
      else if (!(this.pos && this.pos[0] < h && this.pos[1] < w)) {
        this.pos = [Math.floor((h - 1) / 2), Math.floor((w - 1) / 2)];
      }
      this.probe(...this.pos);
    } catch (err) { this.onError(err); }
  }

  paint() {
    const { header, blobs } = this.data;
    const s = this.stage, colours = this.colours;
    if (!s.spatial) {
      drawBars(this.canvas, s, header, blobs[0], colours, this.globalRange, BOX * 2, BOX * 0.6);
    } else {
      const lo = header.lo[0], hi = header.hi[0];
      const [a, b] = rangeFor(colours.norm, s, lo, hi, this.globalRange);
      const scale = scaleFor(a, b, colours.cmap, colours.palette);
      this.canvas.width = header.w; this.canvas.height = header.h;
      this.canvas.getContext("2d").putImageData(
        toImageData(blobs[0], header.w, header.h, codeTable(lo, hi, scale, colours.palette)), 0, 0);
      fitCSS(this.canvas, header.w, header.h);
      drawColorbar(this.bar, scale, colours.palette, `${s.name} channel ${this.channel}`);
    }
    if (!s.spatial) {
      const [a, b] = rangeFor(colours.norm, s, header.lo[0], header.hi[0], this.globalRange);
      drawColorbar(this.bar, scaleFor(a, b, colours.cmap, colours.palette), colours.palette, s.name);
    }
    this.marks.style.width = this.canvas.style.width;
    this.marks.style.height = this.canvas.style.height;
    const dpr = window.devicePixelRatio || 1;
    this.marks.width = Math.round(parseFloat(this.canvas.style.width) * dpr);
    this.marks.height = Math.round(parseFloat(this.canvas.style.height) * dpr);
    this.drawMarks();
  }

  recolour(colours) {
    this.colours = colours;
    if (this.stage && this.data) this.paint();
  }

  size() {
    const h = this.data.header;
    return this.stage.spatial ? [h.h, h.w] : [1, h.n];
  }

  hover(e) {
    if (!this.stage || !this.data) return;
    const r = this.canvas.getBoundingClientRect();
    const [h, w] = this.size();
    const row = Math.min(h - 1, Math.max(0, Math.floor(((e.clientY - r.top) / r.height) * h)));
    const col = Math.min(w - 1, Math.max(0, Math.floor(((e.clientX - r.left) / r.width) * w)));
    if (this.stage.spatial) this.probe(row, col); else this.probe(0, col);
  }

  key(e) {
    if (!this.stage || !this.data) return;
    const step = e.shiftKey ? 5 : 1;
    const d = { ArrowUp: [-step, 0], ArrowDown: [step, 0], ArrowLeft: [0, -step], ArrowRight: [0, step] }[e.key];
    if (!d) return;
    e.preventDefault();
    const [h, w] = this.size();
    this.probe(Math.min(h - 1, Math.max(0, this.pos[0] + d[0])), Math.min(w - 1, Math.max(0, this.pos[1] + d[1])));
  }

  // Ask for the value at (row, col); one request in flight, the latest position wins.
  probe(row, col) {
    this.pos = [row, col];
    this.drawMarks();
    this.canvas.setAttribute("aria-valuetext", `row ${row}, col ${col}`);
    if (this.inflight) { this.pending = [row, col]; return; }
    this.fetchExplain(row, col);
  }

  async fetchExplain(row, col) {
    const s = this.stage, traceId = this.traceId, ch = s.spatial ? this.channel : 0;
    this.inflight = true;
    try {
      const a = await getJSON(explainURL(traceId, s.position, ch, row, col));
      if (this.stage === s && this.traceId === traceId && !this.pending) {
        renderArithmetic(this.box, a, this.goto);
        this.box.dataset.row = row;
        this.box.dataset.col = col;
        this.box.dataset.stage = s.name;
        this.box.dataset.channel = ch;
        this.rf = a.receptive_field;
        this.drawOverlay();
      }
    } catch (err) { this.onError(err); }
    this.inflight = false;
    if (this.pending) {
      const [r, c] = this.pending;
      this.pending = null;
      this.fetchExplain(r, c);
    }
  }

  drawMarks() {
    const m = this.marks, ctx = m.getContext("2d");
    ctx.clearRect(0, 0, m.width, m.height);
    if (!this.stage || !this.data || !this.pos) return;
    const [h, w] = this.size();
    const sx = m.width / w, sy = m.height / h;
    ctx.strokeStyle = "#ef4444";
    ctx.lineWidth = 2;
    if (this.stage.spatial) ctx.strokeRect(this.pos[1] * sx, this.pos[0] * sy, Math.max(3, sx), Math.max(3, sy));
    else ctx.strokeRect(this.pos[1] * sx, 0, Math.max(3, sx), m.height);
  }

  setHeat(heat) { this.heat = heat; this.drawOverlay(); }

  drawOverlay() {
    const o = this.overlay, ctx = o.getContext("2d");
    ctx.clearRect(0, 0, o.width, o.height);
    if (!this.inputHW) return;
    const [H, W] = this.inputHW;
    const sx = o.width / W, sy = o.height / H;
    const rf = this.rf;
    if (rf) {
      const [[r0, r1], [c0, c1]] = rf.clipped;
      ctx.fillStyle = "rgba(255,255,255,0.55)";
      ctx.beginPath();
      ctx.rect(0, 0, o.width, o.height);
      ctx.rect(c0 * sx, r0 * sy, (c1 - c0 + 1) * sx, (r1 - r0 + 1) * sy);
      ctx.fill("evenodd");
    }
    if (this.heat) {
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(this.heat, 0, 0, o.width, o.height);
    }
    if (!rf) return;
    const [[r0, r1], [c0, c1]] = rf.clipped;
    ctx.setLineDash([5, 4]);
    ctx.strokeStyle = "#b91c1c";
    ctx.lineWidth = 1;
    ctx.strokeRect(rf.cols[0] * sx, rf.rows[0] * sy, (rf.cols[1] - rf.cols[0] + 1) * sx, (rf.rows[1] - rf.rows[0] + 1) * sy);
    ctx.setLineDash([]);
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#ef4444";
    ctx.strokeRect(c0 * sx, r0 * sy, (c1 - c0 + 1) * sx, (r1 - r0 + 1) * sy);
    this.overlay.dataset.rf = `${r0},${r1},${c0},${c1}`;
  }
}
