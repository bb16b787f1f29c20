// Shared by the three pages: the JSON API, job polling, the message bar, and BoxCanvas,
// which draws a photo and its boxes on a <canvas> and lets the mouse draw one box.
"use strict";

const APP = JSON.parse(document.getElementById("app-state").textContent);
const POLL_MS = 120;

function $(id) { return document.getElementById(id); }

function showMessage(text, kind) {
  const bar = $("message");
  $("message-text").textContent = text;
  bar.className = "message" + (kind === "info" ? " info" : "");
  bar.hidden = false;
}
function clearMessage() { $("message").hidden = true; }
$("message-close").addEventListener("click", clearMessage);

// fetch + JSON; a failed request throws an Error carrying the server's message.
async function api(method, url, body) {
  const opts = { method, headers: {} };
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let response;
  try { response = await fetch(url, opts); }
  catch (e) { throw new Error("the app does not answer (is the server still running?)"); }
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    const err = new Error((data && data.error) || `${response.status} ${response.statusText}`);
    err.data = data;
    throw err;
  }
  return data;
}

// Poll a job until it ends; onProgress(job) on every answer. Returns the job's result.
async function waitJob(job, onProgress) {
  while (job.status === "queued" || job.status === "running") {
    if (onProgress) onProgress(job);
    await new Promise((r) => setTimeout(r, POLL_MS));
    job = await api("GET", `/api/jobs/${job.id}`);
  }
  if (onProgress) onProgress(job);
  if (job.status === "failed") throw new Error(job.error);
  if (job.status === "cancelled") { const e = new Error("cancelled"); e.cancelled = true; throw e; }
  return job.result;
}

// Upload files; shows a message for every rejected one. Returns the accepted images.
async function uploadFiles(files) {
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  let data;
  try { data = await api("POST", "/api/images", form); }
  catch (e) { showMessage(e.message); return []; }
  if (data.rejected.length) showMessage(data.rejected.map((r) => r.error).join(" · "));
  else clearMessage();
  return data.images;
}

function classColor(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) % 360;
  return `hsl(${(h * 7) % 360}, 85%, 50%)`;
}

const KIND_STYLE = {
  tp: { color: "#16a34a", dash: [], width: 2.5 },
  fp: { color: "#dc2626", dash: [7, 4], width: 2.5 },
  fn: { color: "#2563eb", dash: [2, 3], width: 3.5 },
  ignored: { color: "#9ca3af", dash: [], width: 1.5 },
};

// A photo with boxes. boxes: [{box: [x1, y1, x2, y2] (photo pixels), label, color, dash,
// width, score}]; a box with a score below `threshold` is not drawn.
class BoxCanvas {
  constructor(canvas, { maxWidth = 1000, maxHeight = 640, drawable = false, onDraw = null } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.maxWidth = maxWidth; this.maxHeight = maxHeight;
    this.boxes = []; this.threshold = 0; this.drawn = null; this.image = null;
    this.onDraw = onDraw;
    if (drawable) this._listen();
  }

  load(url, width, height) {
    this.scale = Math.min(this.maxWidth / width, this.maxHeight / height, 1);
    this.canvas.width = Math.round(width * this.scale);
    this.canvas.height = Math.round(height * this.scale);
    this.size = [width, height];
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => { this.image = img; this.render(); resolve(); };
      img.onerror = () => reject(new Error(`cannot show ${url}`));
      img.src = url;
    });
  }

  setBoxes(boxes) { this.boxes = boxes; this.render(); }
  setThreshold(t) { this.threshold = t; this.render(); }
  visible() { return this.boxes.filter((b) => b.score == null || b.score >= this.threshold); }

  render() {
    const { ctx, canvas, scale } = this;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!this.image) return;
    ctx.drawImage(this.image, 0, 0, canvas.width, canvas.height);
    this.labels = [];  // label rectangles drawn: a label mostly hidden by one is skipped
    for (const b of this.visible()) this._box(b);
    if (this.drawn) this._box({ box: this.drawn, color: "#fff", dash: [6, 4], width: 2, outline: true });
  }

  _box(b) {
    const { ctx, scale } = this;
    const [x1, y1, x2, y2] = b.box.map((v) => v * scale);
    ctx.save();
    if (b.outline) { ctx.strokeStyle = "#000"; ctx.lineWidth = 4; ctx.strokeRect(x1, y1, x2 - x1, y2 - y1); }
    ctx.strokeStyle = b.color; ctx.lineWidth = b.width || 2; ctx.setLineDash(b.dash || []);
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    if (b.label) {
      ctx.font = "12px system-ui, sans-serif";
      const w = ctx.measureText(b.label).width + 6;
      const y = y1 >= 16 ? y1 - 16 : y1;
      const hidden = (this.labels || []).some(([lx, ly, lw]) =>
        Math.max(0, Math.min(lx + lw, x1 + w) - Math.max(lx, x1)) * Math.max(0, 16 - Math.abs(ly - y)) > 0.1 * w * 16);
      if (!hidden) {
        if (this.labels) this.labels.push([x1, y, w]);
        ctx.setLineDash([]); ctx.fillStyle = b.color; ctx.fillRect(x1, y, w, 16);
        ctx.fillStyle = "#fff"; ctx.fillText(b.label, x1 + 3, y + 12);
      }
    }
    ctx.restore();
  }

  _point(e) {
    const r = this.canvas.getBoundingClientRect();
    const sx = this.canvas.width / r.width, sy = this.canvas.height / r.height;
    const x = Math.min(Math.max((e.clientX - r.left) * sx, 0), this.canvas.width);
    const y = Math.min(Math.max((e.clientY - r.top) * sy, 0), this.canvas.height);
    return [x / this.scale, y / this.scale];
  }

  _listen() {
    let start = null;
    this.canvas.addEventListener("pointerdown", (e) => {
      if (!this.image || e.button !== 0) return;
      start = this._point(e);
      this.canvas.setPointerCapture(e.pointerId);
      this.drawn = [...start, ...start];
      this.render();
    });
    this.canvas.addEventListener("pointermove", (e) => {
      if (!start) return;
      const p = this._point(e);
      this.drawn = [Math.min(start[0], p[0]), Math.min(start[1], p[1]),
                    Math.max(start[0], p[0]), Math.max(start[1], p[1])];
      this.render();
    });
    this.canvas.addEventListener("pointerup", (e) => {
      if (!start) return;
      start = null;
      const [x1, y1, x2, y2] = this.drawn;
      if (x2 - x1 < 2 || y2 - y1 < 2) this.drawn = null;  // a click, not a box
      this.render();
      if (this.onDraw) this.onDraw(this.drawn);
    });
  }
}

// Detections (the API's {boxes, scores, names}) as BoxCanvas boxes.
function detectionBoxes(det) {
  return det.boxes.map((box, i) => ({
    box, score: det.scores[i], color: classColor(det.names[i]),
    label: `${det.names[i]} ${det.scores[i].toFixed(2)}`,
  }));
}

// A range input with an <output> showing its value; onChange(value) on every move.
function bindSlider(input, output, onChange) {
  const update = () => { output.textContent = Number(input.value).toFixed(2); onChange(Number(input.value)); };
  input.addEventListener("input", update);
  output.textContent = Number(input.value).toFixed(2);
}

// The score slider and the progress bar of a job (the Detect and Review pages).
function threshold() { return Number($("score").value); }

function progress(job) {
  $("progress-row").hidden = false;
  $("progress").max = Math.max(job.total, 1);
  $("progress").value = job.done;
  $("progress-text").textContent = `${job.done} / ${job.total || "?"} images · ${job.seconds.toFixed(1)} s`;
}

function formatMetric(v) { return v == null || v < 0 ? "–" : v.toFixed(3); }
