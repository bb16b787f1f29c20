// Teach: pick or upload photos, draw a box around an object, name its class; the app adds
// the class without training and shows its detections on the photo being searched.
"use strict";

const teach = {
  photos: new Map(),   // id -> image json
  current: null,       // the photo being searched (image json)
  detections: null,    // its detections (API format)
  lastJob: null,       // the job whose detections are shown (for the download)
  state: APP,
};

const view = new BoxCanvas($("canvas"), { maxWidth: 1000, maxHeight: 620, drawable: true, onDraw: onBoxDrawn });

function setStatus(text) { $("status").textContent = text; }

function addPhotos(images) {
  for (const im of images) {
    if (teach.photos.has(im.id)) continue;
    teach.photos.set(im.id, im);
    const li = document.createElement("li");
    li.dataset.id = im.id; li.title = im.name;
    li.innerHTML = `<img alt="" loading="lazy"><span></span>`;
    li.querySelector("img").src = im.url;
    li.querySelector("span").textContent = im.name;
    li.addEventListener("click", () => selectPhoto(im.id));
    $("photos").appendChild(li);
  }
}

async function selectPhoto(id) {
  const im = teach.photos.get(id);
  teach.current = im; teach.detections = null; view.drawn = null;
  for (const li of $("photos").children) li.classList.toggle("current", li.dataset.id === id);
  $("empty").hidden = true;
  view.setBoxes([]);
  await view.load(im.url, im.width, im.height);
  onBoxDrawn(null);
  if (teach.state.detectable.length) await detectCurrent();
  else setStatus(`${im.name}: ${im.width} x ${im.height} px. Draw a box around an object to teach its class.`);
}

function showDetections(det, job, seconds, what) {
  teach.detections = det; teach.lastJob = job;
  view.setBoxes(detectionBoxes(det));
  updateCount(what || "detected", seconds);
  updateDownload();
}

function updateCount(what, seconds) {
  if (!teach.detections) return;
  if (what === undefined) ({ what, seconds } = teach.said || {});
  teach.said = { what, seconds };
  const shown = view.visible().length, all = teach.detections.scores.length;
  const time = seconds != null ? ` in ${seconds.toFixed(2)} s` : "";
  setStatus(`${what || "detected"}${time}: ${shown} of ${all} detections with score ≥ ${view.threshold.toFixed(2)}`);
  $("status").dataset.shown = shown;
}

function updateDownload() {
  const a = $("download");
  if (!teach.lastJob) { a.classList.add("disabled"); a.href = "#"; return; }
  a.classList.remove("disabled");
  a.href = `/api/detect/${teach.lastJob}/results.json?score=${view.threshold}`;
}

async function detectCurrent() {
  if (!teach.current) { showMessage("choose or upload a photo first"); return; }
  setStatus("detecting…");
  const t0 = performance.now();
  try {
    const job = await api("POST", "/api/detect", { images: [teach.current.id], sliced: $("sliced").checked });
    const result = await waitJob(job);
    showDetections(result.images[0], job.id, (performance.now() - t0) / 1000);
    clearMessage();
  } catch (e) { setStatus(""); showMessage(e.message); }
}

function onBoxDrawn(box) {
  const ok = !!box && !!teach.current && !!teach.state.teach_mode;
  $("add-class").disabled = !ok;
  $("add-example").disabled = !ok || !$("class-select").value;
  if (box) {
    const [x1, y1, x2, y2] = box.map(Math.round);
    $("box-info").textContent = `Box on ${teach.current.name}: [${x1}, ${y1}, ${x2}, ${y2}] (${x2 - x1} x ${y2 - y1} px)`;
  } else $("box-info").textContent = "No box drawn: drag on the photo around an object.";
}

async function teachClass(isNew) {
  const name = isNew ? $("class-name").value : $("class-select").value;
  const body = { name, image: teach.current.id, box: view.drawn, new: isNew,
                 search: teach.current.id, sliced: $("sliced").checked };
  $("add-class").disabled = $("add-example").disabled = true;
  setStatus(isNew ? `adding class '${name.trim()}'…` : `adding an example to '${name}'…`);
  const t0 = performance.now();
  try {
    const job = await api("POST", "/api/classes", body);
    const result = await waitJob(job);
    const seconds = (performance.now() - t0) / 1000;
    updateState(result.state);
    view.drawn = null; onBoxDrawn(null);
    if (isNew) $("class-name").value = "";
    showDetections(result.detections, job.id, seconds,
      `taught '${result.class}' (${result.examples} example${result.examples > 1 ? "s" : ""}) and detected`);
    clearMessage();
  } catch (e) {
    setStatus(""); showMessage(e.message); onBoxDrawn(view.drawn);
  }
}

function updateState(state) {
  teach.state = state;
  const n = state.detectable.length;
  $("model-info").textContent = `${state.model} · ${n} detectable class${n === 1 ? "" : "es"}`;
  const list = $("taught"); list.innerHTML = "";
  const select = $("class-select"); const keep = select.value; select.innerHTML = "";
  for (const [name, count] of Object.entries(state.taught)) {
    const li = document.createElement("li");
    li.innerHTML = `<span class="swatch"></span><span class="grow"></span><span class="small"></span>
      <button type="button" class="secondary">Forget</button>`;
    li.querySelector(".swatch").style.background = classColor(name);
    li.querySelector(".grow").textContent = name;
    li.querySelector(".small").textContent = `${count} example${count > 1 ? "s" : ""}`;
    li.querySelector("button").addEventListener("click", () => forget(name));
    list.appendChild(li);
    const opt = document.createElement("option"); opt.value = opt.textContent = name;
    select.appendChild(opt);
  }
  if (keep && state.taught[keep]) select.value = keep;
  if (!Object.keys(state.taught).length) list.innerHTML = `<li class="small">none yet</li>`;
  const trained = state.trained.length ? state.trained.join(", ") : "none named";
  $("trained").textContent = `trained: ${trained}; detectable now: ${state.detectable.join(", ") || "none"}`;
}

async function forget(name) {
  try {
    const result = await waitJob(await api("DELETE", `/api/classes/${encodeURIComponent(name)}`));
    updateState(result.state);
    if (teach.current) await detectCurrent();
  } catch (e) { showMessage(e.message); }
}

async function saveSupports() {
  try {
    const r = await api("POST", "/api/supports/save");
    showMessage(`saved ${Object.keys(r.classes).length} class(es) to ${r.path}`, "info");
  } catch (e) { showMessage(e.message); }
}

async function loadSupports() {
  try {
    const job = await api("POST", "/api/supports/load", { search: teach.current ? teach.current.id : null,
                                                           sliced: $("sliced").checked });
    const result = await waitJob(job);
    updateState(result.state);
    showMessage(`loaded ${Object.keys(result.state.taught).length} class(es) from ${teach.state.supports_path}`, "info");
    if (result.detections) showDetections(result.detections, job.id, null);
  } catch (e) { showMessage(e.message); }
}

async function showDataset() {
  try {
    const data = await api("GET", `/api/datasets/${$("dataset").value}/images?limit=60`);
    addPhotos(data.images);
    setStatus(`${data.images.length} of ${data.total} photos of the dataset listed`);
  } catch (e) { showMessage(e.message); }
}

$("upload").addEventListener("change", async (e) => {
  const images = await uploadFiles(e.target.files);
  e.target.value = "";
  addPhotos(images);
  if (images.length) await selectPhoto(images[0].id);
});
$("detect").addEventListener("click", detectCurrent);
$("add-class").addEventListener("click", () => teachClass(true));
$("add-example").addEventListener("click", () => teachClass(false));
$("class-name").addEventListener("keydown", (e) => { if (e.key === "Enter" && !$("add-class").disabled) teachClass(true); });
$("save-supports").addEventListener("click", saveSupports);
$("load-supports").addEventListener("click", loadSupports);
if ($("show-dataset")) $("show-dataset").addEventListener("click", showDataset);
bindSlider($("score"), $("score-value"), (v) => { view.setThreshold(v); updateCount(); updateDownload(); });
view.threshold = Number($("score").value);
addPhotos(APP.uploads);
updateState(APP);
onBoxDrawn(null);
