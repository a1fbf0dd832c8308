// Talking to the explorer's HTTP API.  Errors come back as JSON
// {"error": {"status", "type", "message"}}; binary frames are unpacked here
// (the layout is written down in convlens/server/encode.py).

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

async function check(resp) {
  if (resp.ok) return resp;
  let type = "HTTPError", message = `${resp.status} ${resp.statusText}`;
  try {
    const body = await resp.json();
    if (body && body.error) ({ type, message } = body.error);
  } catch (_) { /* not JSON */ }
  throw new ApiError(resp.status, type, message);
}

export async function getJSON(url, opts = {}) {
  return (await check(await fetch(url, opts))).json();
}

export function unpack(buf) {
  const dv = new DataView(buf);
  const magic = String.fromCharCode(dv.getUint8(0), dv.getUint8(1), dv.getUint8(2), dv.getUint8(3));
  if (magic !== "CLv1") throw new ApiError(0, "FrameError", "the server sent an unreadable frame");
  const n = dv.getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 8, n)));
  const base = 8 + n + ((8 - ((8 + n) % 8)) % 8);
  const blobs = header.blobs.map(([off, len]) => new Uint8Array(buf, base + off, len));
  return { header, blobs };
}

export async function getFrame(url, opts = {}) {
  const resp = await check(await fetch(url, opts));
  return unpack(await resp.arrayBuffer());
}

export async function postTrace(body, signal) {
  const resp = await check(await fetch("/api/traces", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body), signal,
  }));
  return unpack(await resp.arrayBuffer());
}

export async function uploadImage(file) {
  const form = new FormData();
  form.append("file", file, file.name || "upload");
  return (await check(await fetch("/api/images", { method: "POST", body: form }))).json();
}

// A model file (.keras, .h5, .onnx, .pt2) for the server to load: {id, label, format, framework}.
export async function uploadModel(file) {
  const form = new FormData();
  form.append("file", file, file.name || "model");
  return (await check(await fetch("/api/models", { method: "POST", body: form }))).json();
}

export function channelsURL(traceId, pos, start, count, maxSide) {
  return `/api/traces/${traceId}/stages/${pos}/channels?start=${start}&count=${count}&max_side=${maxSide}`;
}

export function explainURL(traceId, pos, channel, row, col) {
  return `/api/traces/${traceId}/stages/${pos}/explain?channel=${channel}&row=${row}&col=${col}`;
}
