// Detect: photos or a folder through the model in a background job (progress, cancel);
// the score slider filters the boxes here, without running the model again.
"use strict";

const PAGE_SIZE = 24;
const det = { uploads: [], job: null, running: null, images: [], canvases: [], shown: 0 };

function setStatus(text) { $("status").textContent = text; }

async function run(body) {
  clearMessage();
  $("detect-uploads").disabled = $("detect-folder").disabled = true;
  $("results").innerHTML = ""; det.canvases = []; det.images = []; det.shown = 0;
  setStatus("detecting…");
  try {
    const job = await api("POST", "/api/detect", Object.assign({ sliced: $("sliced").checked }, body));
    det.running = job.id;
    const result = await waitJob(job, progress);
    det.job = job.id; det.images = result.images;
    if (result.skipped.length) {
      showMessage(`${result.skipped.length} image(s) could not be read and were skipped: ` +
                  result.skipped.slice(0, 5).map((s) => s.error).join(" · "));
    }
    showMore();
    setStatus(`${result.images.length} image(s) detected in ${((Date.now() - det.t0) / 1000).toFixed(1)} s`);
  } catch (e) {
    setStatus(e.cancelled ? "cancelled" : "");
    if (!e.cancelled) showMessage(e.message);
  } finally {
    det.running = null;
    $("progress-row").hidden = true;
    $("detect-uploads").disabled = !det.uploads.length;
    $("detect-folder").disabled = !APP.roots.length;
    updateCount();
  }
}

function showMore() {
  const next = det.images.slice(det.shown, det.shown + PAGE_SIZE);
  for (const item of next) {
    const card = document.createElement("div");
    card.className = "card";
    card.innerHTML = `<canvas></canvas><div class="caption"><span class="name"></span><span class="n"></span></div>`;
    card.querySelector(".name").textContent = item.image.name;
    $("results").appendChild(card);
    const canvas = new BoxCanvas(card.querySelector("canvas"), { maxWidth: 640, maxHeight: 480 });
    canvas.threshold = threshold();
    canvas.item = item; canvas.caption = card.querySelector(".n");
    canvas.load(item.image.url, item.image.width, item.image.height)
      .then(() => canvas.setBoxes(detectionBoxes(item)));
    det.canvases.push(canvas);
  }
  det.shown += next.length;
  $("more").hidden = det.shown >= det.images.length;
}

function updateCount() {
  const t = threshold();
  let shown = 0, all = 0;
  for (const item of det.images) {
    all += item.scores.length;
    shown += item.scores.filter((s) => s >= t).length;
  }
  for (const c of det.canvases) {
    c.setThreshold(t);
    c.caption.textContent = `${c.item.scores.filter((s) => s >= t).length} boxes`;
  }
  $("count").textContent = det.job ? `${shown} of ${all} detections with score ≥ ${t.toFixed(2)}` : "";
  $("count").dataset.shown = shown;
  const a = $("download");
  a.classList.toggle("disabled", !det.job);
  a.href = det.job ? `/api/detect/${det.job}/results.json?score=${t}` : "#";
}

$("upload").addEventListener("change", async (e) => {
  const images = await uploadFiles(e.target.files);
  e.target.value = "";
  det.uploads.push(...images);
  $("upload-info").textContent = `${det.uploads.length} photo(s) uploaded`;
  $("detect-uploads").disabled = !det.uploads.length;
});
$("detect-uploads").addEventListener("click", () => { det.t0 = Date.now(); run({ images: det.uploads.map((i) => i.id) }); });
$("detect-folder").addEventListener("click", () => { det.t0 = Date.now(); run({ folder: $("folder").value }); });
$("cancel").addEventListener("click", () => { if (det.running) api("POST", `/api/jobs/${det.running}/cancel`); });
$("more").addEventListener("click", showMore);
bindSlider($("score"), $("score-value"), updateCount);
if (APP.uploads.length) {
  det.uploads = APP.uploads.slice();
  $("upload-info").textContent = `${det.uploads.length} photo(s) uploaded`;
  $("detect-uploads").disabled = false;
}
