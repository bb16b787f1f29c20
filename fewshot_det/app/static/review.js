// Review: run the model on a split with ground truth, evaluate with the project's
// evaluator, then browse the errors: a number of the table or a point of a PR curve opens
// those images with TP / FP / FN drawn in their styles.
"use strict";

const rev = { job: null, running: null, summary: null, curve: null };
const CURVE_PAD = 40;

async function runReview() {
  clearMessage();
  $("run").disabled = true;
  try {
    const job = await api("POST", "/api/review", { dataset: Number($("dataset").value),
      limit: Number($("limit").value) || 0, sliced: $("sliced").checked });
    rev.running = job.id;
    await waitJob(job, progress);
    rev.job = job.id;
    $("download").href = `/api/review/${job.id}/results.json`;
    await refresh();
  } catch (e) { if (!e.cancelled) showMessage(e.message); }
  finally { rev.running = null; $("run").disabled = false; $("progress-row").hidden = true; }
}

async function refresh() {
  if (!rev.job) return;
  try { rev.summary = await api("GET", `/api/review/${rev.job}?score=${threshold()}`); }
  catch (e) { showMessage(e.message); return; }
  const s = rev.summary, m = s.metrics;
  $("report").hidden = false;
  let text = `${s.spec}: ${s.num_images} images, ${s.num_detections} detections · AP50 ${formatMetric(m.VOC_AP50)}` +
             ` · AP ${formatMetric(m.AP)} · precision ${formatMetric(m.precision)} · recall ${formatMetric(m.recall)}` +
             ` at score ≥ ${s.score_thresh.toFixed(2)}`;
  const left = Object.entries(s.left_out);
  if (left.length) text += ` · left out (classes not in the dataset): ${left.map(([n, c]) => `${n} ${c}`).join(", ")}`;
  $("summary").textContent = text;
  $("hardest-all").disabled = !s.hardest.length;
  fillTable(s);
  fillCurveSelect(s);
  drawCurve();
}

function countButton(cls, kind, value) {
  const b = document.createElement("button");
  b.type = "button"; b.className = "count"; b.textContent = value;
  b.dataset.cls = cls.name; b.dataset.kind = kind;
  b.disabled = !cls.images[kind].length;
  b.addEventListener("click", () => openGallery(cls, kind));
  return b;
}

function fillTable(s) {
  const body = $("metrics").querySelector("tbody"); body.innerHTML = "";
  for (const cls of s.classes) {
    const tr = document.createElement("tr"); tr.dataset.cls = cls.name;
    const cells = [cls.name, cls.num_gt, countButton(cls, "tp", cls.tp), countButton(cls, "fp", cls.fp),
      countButton(cls, "fn", cls.fn), countButton(cls, "hard", `${cls.images.hard.length} image${cls.images.hard.length === 1 ? "" : "s"}`),
      formatMetric(cls.precision), formatMetric(cls.recall), formatMetric(cls.AP50), formatMetric(cls.AP)];
    for (const c of cells) {
      const td = document.createElement("td");
      if (c instanceof Node) td.appendChild(c); else td.textContent = c;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

const GALLERY_TITLE = { tp: "true positives", fp: "false positives", fn: "misses", hard: "hardest images" };

// cls: a row of the table ({name, images}); name "" stands for every class.
async function openGallery(cls, kind, only, highlight) {
  const list = only ? [{ image: only }] : cls.images[kind].slice(0, 24);
  $("gallery-panel").hidden = false;
  const title = cls.name || "all classes";
  $("gallery-title").textContent = only ? `${title}: the detection of the curve point`
    : `${title}: ${GALLERY_TITLE[kind]} (${cls.images[kind].length} image${cls.images[kind].length > 1 ? "s" : ""}` +
      `${cls.images[kind].length > 24 ? ", the first 24" : ""}), score ≥ ${threshold().toFixed(2)}`;
  const gallery = $("gallery"); gallery.innerHTML = "";
  for (const entry of list) {
    const card = document.createElement("div"); card.className = "card";
    card.innerHTML = `<canvas></canvas><div class="caption"><span class="name"></span><span class="n"></span></div>`;
    gallery.appendChild(card);
    const data = await api("GET", `/api/review/${rev.job}/image/${entry.image}?score=${only ? 0 : threshold()}` +
                                  `&cls=${encodeURIComponent(cls.name)}`);
    card.dataset.tp = data.counts.tp; card.dataset.fp = data.counts.fp; card.dataset.fn = data.counts.fn;
    card.querySelector(".name").textContent = data.image.name;
    card.querySelector(".n").textContent = `TP ${data.counts.tp} · FP ${data.counts.fp} · FN ${data.counts.fn}`;
    const canvas = new BoxCanvas(card.querySelector("canvas"), { maxWidth: 640, maxHeight: 480 });
    await canvas.load(data.image.url, data.image.width, data.image.height);
    const boxes = data.boxes.filter((b) => highlight == null || b.detection === highlight);
    canvas.setBoxes(boxes.map((b) => Object.assign({ box: b.box,
      label: b.kind === "fn" ? `missed ${b.name}` : `${b.kind.toUpperCase()} ${b.name} ${b.score.toFixed(2)}` },
      KIND_STYLE[b.kind])));
  }
  $("gallery-panel").scrollIntoView({ block: "start" });
}

function fillCurveSelect(s) {
  const select = $("curve-class"); const keep = select.value; select.innerHTML = "";
  for (const cls of s.classes) {
    if (!cls.num_gt) continue;
    const opt = document.createElement("option"); opt.value = opt.textContent = cls.name;
    select.appendChild(opt);
  }
  if (keep && [...select.options].some((o) => o.value === keep)) select.value = keep;
}

function curveClass() { return rev.summary && rev.summary.classes.find((c) => c.name === $("curve-class").value); }

function curveXY(canvas, r, p) {
  const w = canvas.width - 2 * CURVE_PAD, h = canvas.height - 2 * CURVE_PAD;
  return [CURVE_PAD + r * w, canvas.height - CURVE_PAD - p * h];
}

function drawCurve() {
  const canvas = $("pr"), ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const cls = curveClass();
  ctx.strokeStyle = "#9aa3b5"; ctx.fillStyle = "#5b6478"; ctx.font = "12px system-ui, sans-serif";
  const [x0, y0] = curveXY(canvas, 0, 0), [x1, y1] = curveXY(canvas, 1, 1);
  ctx.strokeRect(x0, y1, x1 - x0, y0 - y1);
  for (const t of [0, 0.5, 1]) {
    ctx.fillText(t.toFixed(1), curveXY(canvas, t, 0)[0] - 8, y0 + 16);
    ctx.fillText(t.toFixed(1), x0 - 26, curveXY(canvas, 0, t)[1] + 4);
  }
  ctx.fillText("recall", (x0 + x1) / 2 - 16, canvas.height - 6);
  ctx.save(); ctx.translate(12, (y0 + y1) / 2 + 24); ctx.rotate(-Math.PI / 2); ctx.fillText("precision", 0, 0); ctx.restore();
  if (!cls) return;
  const c = cls.curve;
  ctx.strokeStyle = classColor(cls.name); ctx.lineWidth = 2; ctx.beginPath();
  c.recall.forEach((r, i) => { const [x, y] = curveXY(canvas, r, c.precision[i]); i ? ctx.lineTo(x, y) : ctx.moveTo(x, y); });
  ctx.stroke();
  ctx.fillStyle = classColor(cls.name);
  c.recall.forEach((r, i) => { const [x, y] = curveXY(canvas, r, c.precision[i]); ctx.fillRect(x - 2, y - 2, 4, 4); });
  const op = c.score.reduce((last, s, i) => (s >= threshold() ? i : last), -1);
  if (op >= 0) {
    const [x, y] = curveXY(canvas, c.recall[op], c.precision[op]);
    ctx.fillStyle = "#111"; ctx.beginPath(); ctx.arc(x, y, 5, 0, 2 * Math.PI); ctx.fill();
    ctx.fillText(`score ≥ ${threshold().toFixed(2)}`, Math.min(x + 8, canvas.width - 90), y - 8);
  }
  ctx.fillStyle = "#1d2330"; ctx.fillText(`${cls.name}: AP50 ${formatMetric(cls.AP50)}`, x0 + 6, y1 + 16);
}

function onCurveClick(e) {
  const cls = curveClass(); if (!cls || !cls.curve.recall.length) return;
  const canvas = $("pr"), r = canvas.getBoundingClientRect();
  const px = (e.clientX - r.left) * canvas.width / r.width, py = (e.clientY - r.top) * canvas.height / r.height;
  let best = -1, dist = Infinity;
  cls.curve.recall.forEach((rc, i) => {
    const [x, y] = curveXY(canvas, rc, cls.curve.precision[i]);
    const d = (x - px) ** 2 + (y - py) ** 2;
    if (d < dist) { dist = d; best = i; }
  });
  if (best < 0 || dist > 400) return;
  openGallery(cls, "tp", cls.curve.image[best], cls.curve.detection[best])
    .catch((err) => showMessage(err.message));
}

if ($("run")) $("run").addEventListener("click", runReview);
$("hardest-all").addEventListener("click", () => openGallery({ name: "", images: { hard: rev.summary.hardest } }, "hard")
  .catch((e) => showMessage(e.message)));
if ($("cancel")) $("cancel").addEventListener("click", () => { if (rev.running) api("POST", `/api/jobs/${rev.running}/cancel`); });
bindSlider($("score"), $("score-value"), () => { clearTimeout(rev.timer); rev.timer = setTimeout(refresh, 150); });
$("curve-class").addEventListener("change", drawCurve);
$("pr").addEventListener("click", onCurveClick);
