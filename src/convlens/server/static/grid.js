// The stage view: every channel of one stage as a tile.  Tiles are empty boxes until
// they scroll into view (IntersectionObserver); then their chunk of channels is fetched
// (8 bits per value, downsampled to the tile size) and painted.  Thousands of channels
// cost only what is on screen.  Colour changes repaint from the cached codes.
import { channelsURL, getFrame } from "./api.js";
import { codeTable, fmt, rangeFor, scaleFor, toImageData } from "./colour.js";
import { drawBars } from "./journey.js";

const CHUNK_BYTES = 1 << 19;

export class StageGrid {
  constructor(el, onOpen, onError) {
    this.el = el;
    this.onOpen = onOpen;
    this.onError = onError;
    this.focus = 0;
    this.observer = new IntersectionObserver((entries) => this.seen(entries),
      { root: el, rootMargin: "150px" });
    el.addEventListener("keydown", (e) => this.key(e));
  }

  // Show stage `stage` of trace `traceId`.
  show(traceId, stage, globalRange, colours) {
    this.traceId = traceId;
    this.stage = stage;
    this.globalRange = globalRange;
    this.colours = colours;
    this.chunks = new Map();
    this.visible = new Set();
    this.observer.disconnect();
    this.el.replaceChildren();
    this.tiles = [];
    if (!stage.spatial) return this.showFlat();
    const [C, H, W] = stage.shape;
    this.tile = C <= 4 ? 200 : C <= 16 ? 120 : C <= 64 ? 88 : 64;
    const side = Math.round(this.tile * (window.devicePixelRatio || 1));
    const f = Math.max(1, Math.ceil(Math.max(H, W) / side));
    this.maxSide = Math.max(H, W) <= side ? 0 : side;
    const h = Math.ceil(H / f), w = Math.ceil(W / f);
    this.perChunk = Math.max(1, Math.min(1024, Math.floor(CHUNK_BYTES / (h * w))));
    const s = Math.min(this.tile / w, this.tile / h);
    const cssW = Math.max(8, Math.round(w * s)), cssH = Math.max(8, Math.round(h * s));
    this.focus = Math.min(this.focus, C - 1);
    const frag = document.createDocumentFragment();
    for (let c = 0; c < C; c++) {
      const t = document.createElement("button");
      t.type = "button";
      t.className = "tile";
      t.dataset.channel = c;
      t.tabIndex = c === this.focus ? 0 : -1;
      t.setAttribute("aria-label", `${stage.name} channel ${c}`);
      t.style.setProperty("--w", `${cssW}px`);
      t.style.setProperty("--h", `${cssH}px`);
      const cap = document.createElement("span");
      cap.textContent = c;
      t.append(cap);
      t.addEventListener("click", () => { this.setFocus(c); this.onOpen(c); });
      frag.append(t);
      this.tiles.push(t);
      this.observer.observe(t);
    }
    this.el.append(frag);
  }

  async showFlat() {
    const s = this.stage;
    const wrap = document.createElement("div");
    wrap.className = "flat";
    const canvas = document.createElement("canvas");
    canvas.className = "bars";
    canvas.tabIndex = 0;
    canvas.setAttribute("aria-label", `${s.name}: ${s.shape[0]} values as bars; click one to explain it`);
    wrap.append(canvas);
    this.el.append(wrap);
    try {
      const { header, blobs } = await getFrame(channelsURL(this.traceId, s.position, 0, 1, 0));
      if (this.stage !== s) return;
      this.flat = { header, codes: blobs[0], canvas };
      this.paintFlat();
      canvas.addEventListener("click", (e) => {
        const r = canvas.getBoundingClientRect();
        const unit = Math.min(header.n - 1, Math.floor(((e.clientX - r.left) / r.width) * header.n));
        this.onOpen(0, unit);
      });
    } catch (err) { this.onError(err); }
  }

  paintFlat() {
    const { header, codes, canvas } = this.flat;
    const w = Math.max(200, this.el.clientWidth - 12);
    drawBars(canvas, this.stage, header, codes, this.colours, this.globalRange, w, Math.min(260, w / 2));
  }

  seen(entries) {
    for (const e of entries) {
      const c = Number(e.target.dataset.channel);
      if (e.isIntersecting) { this.visible.add(c); this.load(c); } else this.visible.delete(c);
    }
  }

  chunk(k) {
    if (!this.chunks.has(k)) {
      const stage = this.stage, traceId = this.traceId;
      const p = getFrame(channelsURL(traceId, stage.position, k * this.perChunk, this.perChunk, this.maxSide))
        .then((fr) => fr, (err) => { this.chunks.delete(k); throw err; });
      this.chunks.set(k, p);
    }
    return this.chunks.get(k);
  }

  async load(c) {
    const stage = this.stage;
    try {
      const fr = await this.chunk(Math.floor(c / this.perChunk));
      if (stage === this.stage && this.visible.has(c)) this.paintTile(c, fr);
    } catch (err) {
      if (stage === this.stage) this.onError(err);
    }
  }

  paintTile(c, { header, blobs }) {
    const t = this.tiles[c];
    let canvas = t.querySelector("canvas");
    if (!canvas) {
      canvas = document.createElement("canvas");
      canvas.width = header.w; canvas.height = header.h;
      t.prepend(canvas);
    }
    const i = c - header.start, size = header.w * header.h;
    const lo = header.lo[i], hi = header.hi[i];
    const [a, b] = rangeFor(this.colours.norm, this.stage, lo, hi, this.globalRange);
    const table = codeTable(lo, hi, scaleFor(a, b, this.colours.cmap, this.colours.palette), this.colours.palette);
    canvas.getContext("2d").putImageData(
      toImageData(blobs[0].subarray(i * size, (i + 1) * size), header.w, header.h, table), 0, 0);
    t.title = `channel ${c}: ${fmt(lo)} … ${fmt(hi)}`;
    t.dataset.painted = "1";
  }

  // New colours: repaint what is on screen from the codes already here.
  recolour(colours) {
    this.colours = colours;
    if (!this.stage) return;
    if (!this.stage.spatial) { if (this.flat) this.paintFlat(); return; }
    for (const c of this.visible) this.load(c);
  }

  setFocus(c) {
    if (!this.tiles.length) return;
    this.tiles[this.focus].tabIndex = -1;
    this.focus = c;
    this.tiles[c].tabIndex = 0;
  }

  columns() {
    if (this.tiles.length < 2) return 1;
    const y0 = this.tiles[0].offsetTop;
    const k = this.tiles.findIndex((t) => t.offsetTop !== y0);
    return k < 0 ? this.tiles.length : k;
  }

  key(e) {
    if (!this.tiles.length || !e.target.classList.contains("tile")) return;
    const n = this.tiles.length, cols = this.columns();
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols };
    if (e.key in moves) {
      e.preventDefault();
      const c = Math.max(0, Math.min(n - 1, this.focus + moves[e.key]));
      this.setFocus(c);
      this.tiles[c].focus();
      this.tiles[c].scrollIntoView({ block: "nearest" });
    } else if (e.key === "Home" || e.key === "End") {
      e.preventDefault();
      const c = e.key === "Home" ? 0 : n - 1;
      this.setFocus(c);
      this.tiles[c].focus();
    }
  }
}
