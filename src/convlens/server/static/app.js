// The explorer page: wires the image and model choices, the toy-network editor, the
// journey, the stage grid and the channel view together.  No build step: plain ES modules.
import { ApiError, getFrame, getJSON, postTrace, uploadImage, uploadModel } from "./api.js";
import { stageLink } from "./arithmetic.js";
import { ChannelView } from "./channelview.js";
import { NORM_LABELS, Palette, drawColorbar, fmt, scaleFor } from "./colour.js";
import { Editor } from "./editor.js";
import { StageGrid } from "./grid.js";
import { Journey } from "./journey.js";

const $ = (sel) => document.querySelector(sel);
const perf = (window.__convlens = { renders: [], errors: [], trace: null, ready: false });

const state = { info: null, palette: null, frame: null, stage: -1, channel: 0, seq: 0, ctrl: null };

function colours() {
  return { norm: $("#norm-select").value, cmap: $("#cmap-select").value, palette: state.palette };
}

function status(text) { $("#status").textContent = text; }

function showError(err) {
  const text = err instanceof ApiError || err instanceof Error ? err.message : String(err);
  $("#error-text").textContent = text;
  $("#error").hidden = false;
  perf.errors.push(text);
}

function clearError() { $("#error").hidden = true; }

// -- traces ---------------------------------------------------------------------
async function requestTrace(reason, t0 = performance.now()) {
  const seq = ++state.seq;
  if (state.ctrl) state.ctrl.abort();
  state.ctrl = new AbortController();
  const model = $("#model-select").value;
  const body = { image: $("#image-select").value, model, seed: 0,
    preprocess: $("#preprocess-select").value || null };
  if (model === "toy") { body.spec = editor.spec(); body.seed = editor.seedValue(); }
  status(`computing… (${reason})`);
  document.body.setAttribute("aria-busy", "true");
  try {
    const frame = model.startsWith("held:")  // a trace the server holds: shown as it is
      ? await getFrame(`/api/traces/${model.slice(5)}`, { signal: state.ctrl.signal })
      : await postTrace(body, state.ctrl.signal);
    if (seq !== state.seq) return;
    const t1 = performance.now();
    clearError();
    showTrace(frame);
    const t2 = performance.now();
    await new Promise((r) => requestAnimationFrame(() => r()));
    const ms = performance.now() - t0;
    perf.renders.push({ reason, ms, trace: frame.header.trace.id, timing: frame.header.timing,
      network_ms: t1 - t0, draw_ms: t2 - t1 });
    const tm = frame.header.timing;
    status(`${frame.header.trace.model} · ${frame.header.stages.length} stages · ` +
      `${Math.round(ms)} ms (model ${Math.round(tm.capture_ms)} ms)`);
  } catch (err) {
    if (err.name === "AbortError") return;
    if (seq === state.seq) { showError(err); status("the last request failed; the page shows the previous result"); }
  } finally {
    if (seq === state.seq) document.body.removeAttribute("aria-busy");
  }
}

function showTrace(frame) {
  const h = frame.header;
  const prev = state.frame ? state.frame.header.stages[state.stage] : null;
  state.frame = frame;
  perf.trace = h.trace.id;
  document.body.dataset.trace = h.trace.id;
  journey.show(frame, colours());
  channel.setInput(frame);
  $("#dl-trace").href = `/api/traces/${h.trace.id}/npz`;
  $("#dl-trace").removeAttribute("aria-disabled");
  const rep = $("#dl-report");
  rep.hidden = !h.features.report;
  rep.href = `/api/traces/${h.trace.id}/report.html`;
  $("#arch-btn").hidden = !h.features.architecture;
  showPredictions(h);
  showModelInfo(h);
  showPreprocessing(h);
  // stay on the same stage (by name, else by position) when the network changes
  let pos = -1;
  if (prev) {
    pos = h.stages.findIndex((s) => s.name === prev.name);
    if (pos < 0) pos = Math.min(state.stage, h.stages.length - 1);
  }
  journey.select(Math.max(pos, 0));
}

function showModelInfo(h) {
  const box = $("#model-info");
  const toy = h.trace.model_id === "toy";
  $("#editor").hidden = !toy;
  box.hidden = toy;
  const held = h.trace.model_id === "held";
  $("#image-select").disabled = held;
  $("#upload-btn").disabled = held;
  if (held) {
    const merges = h.stages.filter((s) => s.kind === "merge").length;
    $("#model-text").textContent = `${h.trace.model} (${h.trace.framework}), a trace captured ` +
      `elsewhere: ${h.stages.length} stages, ${merges} merge${merges === 1 ? "" : "s"}. It shows the ` +
      `image it was captured on (${h.trace.original[0]}x${h.trace.original[1]}); choose a model to pick images again.`;
  } else if (!toy) {
    const steps = h.trace.preprocessing_text;
    $("#model-text").textContent = `${h.trace.model} (${h.trace.framework}), ${h.stages.length} stages. ` +
      `Input ${h.trace.original[0]}x${h.trace.original[1]}` +
      (steps !== "none" ? `, preprocessing: ${steps}; the pictures show the input at the model's size.` : ".");
  }
}

// The preprocessing the trace used, next to the journey's input: the steps as
// convlens.preprocess.describe_steps writes them, and where they came from.
function showPreprocessing(h) {
  const held = h.trace.model_id === "held";
  $("#preprocess-select").disabled = held;
  const line = $("#preprocess-line");
  const source = held ? "as captured" : h.trace.preset ? `preset ${h.trace.preset}` : "the model's own";
  const label = document.createElement("b");
  label.textContent = "input preprocessing";
  line.replaceChildren(label, ` (${source}): ${h.trace.preprocessing_text}`);
  line.title = `input preprocessing (${source}): ${h.trace.preprocessing_text}`;
}

function showPredictions(h) {
  const box = $("#predictions"), list = $("#pred-list");
  const p = h.predictions;
  box.hidden = !p;
  list.replaceChildren();
  $("#gradcam-box").hidden = !(p && h.features.gradcam);
  if (!p) return;
  for (const t of p.top) {
    const li = document.createElement("li");
    const pct = p.probabilities ? `${(100 * t.value).toFixed(1)}%` : fmt(t.value);
    li.innerHTML = `<span class="cls"></span><span class="pct">${pct}</span>`;
    li.querySelector(".cls").textContent = t.name;
    if (p.probabilities) li.style.setProperty("--p", `${Math.max(1, 100 * t.value)}%`);
    list.append(li);
  }
}

// -- stage and channel ------------------------------------------------------------
function showStageHead(stage) {
  if (!stage) {
    $("#stage-title").textContent = "Stage";
    $("#stage-sub").textContent = "pick a stage in the journey";
    $("#dl-stage").hidden = true;
    return;
  }
  const c = colours();
  $("#stage-title").textContent = `${stage.name} · ${stage.kind} · ${stage.shape_str}`;
  const link = $("#dl-stage");
  link.hidden = false;
  link.href = `/api/traces/${state.frame.header.trace.id}/stages/${stage.position}/png?norm=${c.norm}` +
    (c.cmap !== "auto" ? `&cmap=${c.cmap}` : "");
  link.setAttribute("aria-label", `download ${stage.name} as PNG`);
  const bar = $("#stage-bar");
  if (c.norm === "map") {
    bar.hidden = true;
    $("#stage-sub").textContent = `${stage.op} · ${NORM_LABELS.map}: each map has its own colour range (hover a map to read it)`;
  } else {
    bar.hidden = false;
    const [lo, hi] = c.norm === "global" ? state.frame.header.global : [stage.min, stage.max];
    drawColorbar(bar, scaleFor(lo, hi, c.cmap, state.palette), state.palette, stage.name);
    $("#stage-sub").textContent = `${stage.op} · ${NORM_LABELS[c.norm]} ${fmt(lo)} … ${fmt(hi)}`;
  }
}

// The graph around a stage: the stages that fed it and the stages it fed, as links.
const MAX_LINKS = 12;
function showLinks(stage) {
  const nav = $("#stage-links");
  nav.replaceChildren();
  const stages = state.frame.header.stages;
  const link = (p, fallback) => (p === -1 ? stageLink("input", -1, null)
    : p === null ? stageLink(fallback, null, null) : stageLink(stages[p].name, p, gotoStage));
  const group = (label, cls, items) => {
    const g = document.createElement("span");
    g.className = cls;
    g.append(label);
    items.slice(0, MAX_LINKS).forEach((x, i) => { if (i) g.append(" "); g.append(x); });
    if (items.length > MAX_LINKS) g.append(` … and ${items.length - MAX_LINKS} more`);
    return g;
  };
  const ins = (stage.inputs || []).map((p, i) => link(p, `stage ${stage.sources[i]} (not in this trace)`));
  const label = stage.merge ? `${stage.merge} of ${ins.length}: ` : ins.length > 1 ? "inputs: " : "input: ";
  nav.append(group(label, "inputs", ins));
  const outs = (stage.consumers || []).map((p) => link(p));
  nav.append(group(" → used by: ", "consumers", outs.length ? outs : ["nothing (an output)"]));
}

function gotoStage(pos, channel = null) {
  if (channel !== null) state.channel = channel;
  journey.select(pos, true);
}

function selectStage(pos) {
  const h = state.frame.header;
  const stage = h.stages[pos];
  state.stage = pos;
  showStageHead(stage);
  showLinks(stage);
  grid.show(h.trace.id, stage, h.global, colours());
  // an open channel stays open (clamped to this stage's channels)
  if (state.channel !== null) openChannel(Math.min(state.channel, stage.spatial ? stage.shape[0] - 1 : 0));
  else channel.clear();
}

function openChannel(c, unit = null) {
  const h = state.frame.header;
  const stage = h.stages[state.stage];
  state.channel = c;
  channel.show(h.trace.id, stage, c, h.global, colours(), unit);
}

function recolour() {
  if (!state.frame) return;
  const t0 = performance.now();
  const c = colours();
  journey.paint(c);
  grid.recolour(c);
  channel.recolour(c);
  if (state.stage >= 0) showStageHead(state.frame.header.stages[state.stage]);
  perf.recolours = perf.recolours || [];
  perf.recolours.push(performance.now() - t0);
}

// -- images ---------------------------------------------------------------------
async function upload(file) {
  if (!file) return;
  const t0 = performance.now();
  status(`uploading ${file.name}…`);
  try {
    const res = await uploadImage(file);
    const sel = $("#image-select");
    let opt = [...sel.options].find((o) => o.value === res.id);
    if (!opt) {
      opt = new Option(`${res.label} (${res.height}x${res.width})`, res.id);
      sel.append(opt);
    }
    sel.value = res.id;
    if (res.note) status(`${res.label}: ${res.note}`);
    await requestTrace("upload", t0);
  } catch (err) {
    showError(err);
    status("the upload was refused; the page shows the previous image");
  } finally {
    $("#upload-input").value = "";
  }
}

// -- model files ------------------------------------------------------------------
async function loadModelFile(file) {
  if (!file) return;
  const t0 = performance.now();
  const limit = state.info.limits.model_bytes;
  try {
    if (file.size > limit) {  // the server says the same; no need to send it
      throw new ApiError(413, "PayloadTooLarge", `${file.name} is ${file.size.toLocaleString("en")} bytes, ` +
        `larger than the limit of ${limit.toLocaleString("en")} — send a smaller model file`);
    }
    status(`loading the model ${file.name}…`);
    const res = await uploadModel(file);
    const sel = $("#model-select");
    let opt = [...sel.options].find((o) => o.value === res.id);
    if (!opt) {
      opt = new Option(`${res.label} (uploaded)`, res.id);
      sel.append(opt);
    }
    sel.value = res.id;
    state.stage = -1; state.channel = 0;
    await requestTrace("model file", t0);
  } catch (err) {
    showError(err);
    status("the model file was refused; the page shows the previous model");
  } finally {
    $("#model-input").value = "";
  }
}

// Drop a file: onto the model area (the Model controls, the model panel) it is a model
// file; anywhere else an image.
function setupDrop() {
  const overlay = $("#drop-overlay");
  let depth = 0;
  const hasFiles = (e) => [...(e.dataTransfer?.types || [])].includes("Files");
  const modelArea = (e) => e.target instanceof Element && e.target.closest(".drop-model");
  let marked = null;
  const mark = (area) => {
    if (marked === area) return;
    if (marked) marked.classList.remove("drop-target");
    marked = area;
    if (area) area.classList.add("drop-target");
    overlay.classList.toggle("model", !!area);
    const formats = Object.keys((state.info && state.info.model_formats) || {}).join(", ");
    overlay.textContent = area ? `Drop the model file to load it (${formats})`
      : "Drop the image to upload it";
  };
  const done = () => { depth = 0; overlay.hidden = true; mark(null); };
  document.addEventListener("dragenter", (e) => { if (hasFiles(e)) { depth++; overlay.hidden = false; } });
  document.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) done(); });
  document.addEventListener("dragover", (e) => { if (hasFiles(e)) { e.preventDefault(); mark(modelArea(e)); } });
  document.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    const forModel = modelArea(e);
    done();
    if (forModel) loadModelFile(e.dataTransfer.files[0]);
    else upload(e.dataTransfer.files[0]);
  });
}

async function showArchitecture() {
  const dlg = $("#arch-dialog"), body = $("#arch-body");
  const img = document.createElement("img");
  img.alt = "architecture diagram of the model";
  img.src = `/api/traces/${state.frame.header.trace.id}/architecture.svg`;
  img.onerror = () => { body.textContent = "the diagram could not be drawn for this model"; };
  body.replaceChildren(img);
  dlg.showModal();
}

async function toggleGradcam() {
  const on = $("#gradcam-toggle").checked;
  if (!on) { channel.setHeat(null); return; }
  try {
    const g = await getJSON(`/api/traces/${state.frame.header.trace.id}/gradcam`);
    const cv = document.createElement("canvas");
    cv.width = g.w; cv.height = g.h;
    const img = new ImageData(g.w, g.h);
    const lut = state.palette.tables.inferno;
    const px = new Uint32Array(img.data.buffer);
    g.values.forEach((q, i) => {
      px[i] = (lut[q] & 0x00ffffff) | (Math.round(0.6 * q) << 24);
    });
    cv.getContext("2d").putImageData(img, 0, 0);
    channel.setHeat(cv);
    status(`Grad-CAM for "${g.class_name}" at ${g.stage} (${g.h}x${g.w}, stretched to the input)`);
  } catch (err) { showError(err); $("#gradcam-toggle").checked = false; }
}

// -- start ---------------------------------------------------------------------
let editor, journey, grid, channel;

async function main() {
  const info = await getJSON("/api/info");
  state.info = info;
  state.palette = new Palette(info);
  const imgSel = $("#image-select");
  for (const im of info.images) imgSel.append(new Option(im.label, im.id));
  const modelSel = $("#model-select");
  for (const m of info.models) modelSel.append(new Option(m.label, m.id));
  for (const t of info.traces || []) modelSel.append(new Option(t.label, `held:${t.id}`));
  // atlases (serve --atlas): their pages open in a new tab, served by this server
  const atlasLinks = $("#atlas-links");
  for (const a of info.atlases || []) {
    const link = document.createElement("a");
    link.href = `/atlas/${a.id}/`;
    link.target = "_blank";
    link.rel = "noopener";
    link.textContent = `Atlas: ${a.label}`;
    atlasLinks.append(link);
    atlasLinks.hidden = false;
  }
  const preSel = $("#preprocess-select");
  for (const name of info.presets || []) preSel.append(new Option(name, name));
  const formats = Object.keys(info.model_formats || {});
  if (formats.length) {
    $("#model-input").accept = formats.join(",");
    $("#model-btn").title = `a ${formats.join(", ")} file (up to ${Math.round(info.limits.model_bytes / 2 ** 20)} MB); or drop one here`;
  }
  modelSel.value = info.default_model;
  // a held trace opens first; #trace=tN in the address opens that one
  const asked = /^#trace=(t[0-9]{1,9})$/.exec(location.hash);
  if (asked) {
    let opt = [...modelSel.options].find((o) => o.value === `held:${asked[1]}`);
    if (!opt) modelSel.append((opt = new Option(`trace ${asked[1]}`, `held:${asked[1]}`)));
    modelSel.value = opt.value;
  } else if (info.traces && info.traces.length) modelSel.value = `held:${info.traces[0].id}`;
  const cmapSel = $("#cmap-select");
  for (const name of [...info.sequential, ...info.diverging]) cmapSel.append(new Option(name, name));

  editor = new Editor($("#editor"), () => requestTrace("network"));
  journey = new Journey($("#journey"), selectStage);
  grid = new StageGrid($("#grid"), (c, unit) => openChannel(c, unit ?? null), showError);
  channel = new ChannelView($("#channel-view"), showError, gotoStage);
  channel.clear();

  imgSel.addEventListener("change", () => requestTrace("image"));
  modelSel.addEventListener("change", () => { state.stage = -1; state.channel = 0; requestTrace("model"); });
  $("#norm-select").addEventListener("change", recolour);
  $("#cmap-select").addEventListener("change", recolour);
  $("#upload-btn").addEventListener("click", () => $("#upload-input").click());
  $("#upload-input").addEventListener("change", (e) => upload(e.target.files[0]));
  $("#model-btn").addEventListener("click", () => $("#model-input").click());
  $("#model-input").addEventListener("change", (e) => loadModelFile(e.target.files[0]));
  preSel.addEventListener("change", () => requestTrace("preprocessing"));
  $("#error-close").addEventListener("click", clearError);
  $("#arch-btn").addEventListener("click", showArchitecture);
  $("#gradcam-toggle").addEventListener("change", toggleGradcam);
  $("#channel-canvas").addEventListener("keydown", (e) => {
    if (e.key === "Escape") document.querySelector("#grid .tile[tabindex='0']")?.focus();
  });
  setupDrop();
  await requestTrace("start");
  perf.ready = true;
  document.body.dataset.ready = "1";
}

main().catch((err) => { showError(err); perf.ready = true; });
