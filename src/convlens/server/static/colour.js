// Colour scales, computed in the browser from 8-bit codes and each channel's range.
// The rules are convlens.render.scale's: signed data gets a diverging map over the
// symmetric range [-m, m] (zero is the middle colour); non-negative data a sequential
// map over [0, max].  A unit value u picks table row min(floor(u * 256), 255).

export const NORM_LABELS = { map: "per-map range", stage: "stage range", global: "global range" };

export class Palette {
  constructor(info) {
    this.sequential = info.sequential;
    this.diverging = info.diverging;
    this.defaultSeq = info.default_sequential;
    this.defaultDiv = info.default_diverging;
    this.tables = {};
    for (const [name, flat] of Object.entries(info.colormaps)) {
      const t = new Uint32Array(256);
      for (let i = 0; i < 256; i++) {
        t[i] = (255 << 24) | (flat[3 * i + 2] << 16) | (flat[3 * i + 1] << 8) | flat[3 * i];
      }
      this.tables[name] = t;
    }
  }
  rgb(name, i) {
    const v = this.tables[name][i];
    return `rgb(${v & 255},${(v >> 8) & 255},${(v >> 16) & 255})`;
  }
}

// The scale for data spanning [lo, hi]; cmap "auto" picks by sign.
export function scaleFor(lo, hi, cmap, palette) {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) { lo = 0; hi = 0; }
  const signed = lo < 0;
  let vmin, vmax;
  if (signed) { const m = Math.max(-lo, hi); vmin = -m; vmax = m; } else { vmin = 0; vmax = hi; }
  const name = cmap && cmap !== "auto" ? cmap : (signed ? palette.defaultDiv : palette.defaultSeq);
  return { vmin, vmax, signed, cmap: name, constant: lo === hi };
}

// The data range a channel is coloured over, for a normalisation mode.
export function rangeFor(norm, stage, lo, hi, globalRange) {
  if (norm === "map") return [lo, hi];
  if (norm === "global") return globalRange;
  return [stage.min, stage.max];
}

export function unitIndex(v, scale) {
  const span = scale.vmax - scale.vmin;
  if (!(span > 0)) return scale.signed ? 128 : 0;
  const u = Math.min(1, Math.max(0, (v - scale.vmin) / span));
  return Math.min(255, Math.floor(u * 256));
}

// 256 packed RGBA colours, one per 8-bit code of a channel sent with [lo, hi].
export function codeTable(lo, hi, scale, palette) {
  const lut = palette.tables[scale.cmap];
  const out = new Uint32Array(256);
  const step = (hi - lo) / 255;
  for (let q = 0; q < 256; q++) out[q] = lut[unitIndex(lo + q * step, scale)];
  return out;
}

// Write codes (w*h bytes) through a code table into an ImageData.
export function toImageData(codes, w, h, table) {
  const img = new ImageData(w, h);
  const px = new Uint32Array(img.data.buffer);
  for (let i = 0; i < w * h; i++) px[i] = table[codes[i]];
  return img;
}

export function rgbImageData(bytes, w, h) {
  const img = new ImageData(w, h);
  const d = img.data;
  for (let i = 0, j = 0; i < w * h; i++, j += 3) {
    d[4 * i] = bytes[j]; d[4 * i + 1] = bytes[j + 1]; d[4 * i + 2] = bytes[j + 2]; d[4 * i + 3] = 255;
  }
  return img;
}

export function fmt(v) {
  if (typeof v === "string") return v;
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(2);
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(4)));
}

// A horizontal colour bar with the real values at its ends (and zero when signed).
export function drawColorbar(canvas, scale, palette, label) {
  const w = canvas.width, h = canvas.height, barH = 12, pad = 6;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  const bw = w - 2 * pad;
  const lut = palette.tables[scale.cmap];
  const img = ctx.createImageData(bw, barH);
  const px = new Uint32Array(img.data.buffer);
  for (let x = 0; x < bw; x++) {
    const c = lut[Math.min(255, Math.floor((x / Math.max(1, bw - 1)) * 256))];
    for (let y = 0; y < barH; y++) px[y * bw + x] = c;
  }
  ctx.putImageData(img, pad, 2);
  ctx.strokeStyle = "#888";
  ctx.strokeRect(pad - 0.5, 1.5, bw + 1, barH + 1);
  ctx.fillStyle = "#222";
  ctx.font = "11px system-ui, sans-serif";
  ctx.textBaseline = "top";
  const ticks = scale.constant && scale.vmin === scale.vmax
    ? [[0.5, `constant ${fmt(scale.vmin)}`]]
    : [[0, fmt(scale.vmin)], ...(scale.signed ? [[0.5, "0"]] : []), [1, fmt(scale.vmax)]];
  for (const [u, text] of ticks) {
    const x = pad + u * bw;
    ctx.fillRect(Math.round(x), barH + 3, 1, 3);
    ctx.textAlign = u === 0 ? "left" : u === 1 ? "right" : "center";
    ctx.fillText(text, x, barH + 7);
  }
  canvas.setAttribute("aria-label", `colour bar ${label || ""}: ${scale.cmap}, ${fmt(scale.vmin)} to ${fmt(scale.vmax)}`);
  canvas.dataset.vmin = scale.vmin;
  canvas.dataset.vmax = scale.vmax;
}
