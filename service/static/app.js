// udic page: upload, live progress, before/after split view, same-size comparison, decode a .udic.
// Plain script, no build step, no third-party code: the service often runs without internet.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "udic.apiKey";
const POLL_MS = 700;

const state = {
  config: null,
  file: null,           // the image the user chose (File)
  fileDims: null,       // {w, h} when the browser could read it
  job: null,            // the finished job view
  pollTimer: null,
  sources: {},          // name -> {label, url, psnr}
  chart: [],            // [{t, bpp, psnr}]
  view: { zoom: 0, cx: 0.5, cy: 0.5, split: 50, w: 0, h: 0 },
};

// ------------------------------------------------------------------ errors in words
function showError(text) {
  const el = $("error");
  el.textContent = text;
  el.hidden = !text;
  if (text) el.scrollIntoView({ block: "nearest" });
}

async function problemText(resp) {
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  const detail = body && (body.detail || body.title);
  const title = body && body.title;
  if (resp.status === 401) return "The server refused the API key" + (apiKey() ? ": check it and enter it again." : ": it needs one.");
  if (resp.status === 413) return "The file is too large for this server" + (detail ? ": " + detail : ".");
  if (resp.status === 503) return (title || "The server is busy") + ": " + (detail || "try again in a moment.");
  if (title && detail && title !== detail) return title + ": " + detail;
  return detail || "The server answered " + resp.status + " " + resp.statusText + ".";
}

// ------------------------------------------------------------------ the API (with the key, when keys are on)
function apiKey() { return sessionStorage.getItem(KEY_STORE) || ""; }

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = apiKey();
  if (key) headers.set("Authorization", "Bearer " + key);
  let resp;
  try {
    resp = await fetch(path, { ...options, headers });
  } catch (e) {
    throw new Error("Could not reach the server (" + e.message + "). Is it still running?");
  }
  if (!resp.ok) {
    const text = await problemText(resp);
    if (resp.status === 401 && state.config && state.config.auth) askForKey(text);
    const err = new Error(text);
    err.status = resp.status;
    throw err;
  }
  return resp;
}

// ------------------------------------------------------------------ API key
function askForKey(message) {
  $("key-section").hidden = false;
  if (!apiKey()) $("upload-section").hidden = true;
  $("key-change").hidden = true;
  if (message) showError(message);
  $("key-input").focus();
}

async function submitKey(ev) {
  ev.preventDefault();
  const key = $("key-input").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_STORE, key);
  try {
    await api("/v1/domains");  // any call that needs a key: tells at once whether this one is good
  } catch (e) {
    sessionStorage.removeItem(KEY_STORE);
    showError(e.message);
    $("key-input").select();
    return;
  }
  $("key-input").value = "";
  $("key-section").hidden = true;
  $("key-change").hidden = false;
  $("upload-section").hidden = false;
  showError("");
  await loadDomains();
  $("file-input").focus();
}

// ------------------------------------------------------------------ form setup
async function loadConfig() {
  const resp = await fetch("/ui/config.json");
  state.config = await resp.json();
  const c = state.config;
  const q = $("quality");
  q.min = String(c.quality.min);
  q.max = String(c.quality.max);
  const preset = $("preset");
  for (const p of c.presets) preset.add(new Option(p, p));
  const targets = { target_bytes: "Target size (bytes)", target_bpp: "Target bits per pixel", target_psnr: "Target PSNR (dB)" };
  for (const t of c.targets) if (targets[t]) $("rate-mode").add(new Option(targets[t], t));
  $("rate-row").hidden = c.targets.length === 0;
  if (c.auth && !apiKey()) askForKey("");
  else if (c.auth) $("key-change").hidden = false;
}

async function loadDomains() {
  if (state.config.auth && !apiKey()) return;
  let list = [];
  try {
    list = (await (await api("/v1/domains")).json()).domains;
  } catch (e) {
    if (e.status !== 401) showError("Could not list the domain adapters: " + e.message);
    return;
  }
  const sel = $("domain");
  while (sel.options.length > 2) sel.remove(2);
  for (const d of list) sel.add(new Option(`${d.name} (${d.gain_pct.toFixed(1)} % smaller on its samples)`, d.id));
}

const PRESET_HINTS = {
  none: "none: the plain encode, no adaptation: the fastest.",
  fast: "fast: adapts the code to this image (a few hundred iterations): smaller files, slower.",
  balanced: "balanced: more adaptation than fast, slower.",
  paper: "paper: the paper's 2000 + 500 adaptation steps: slow, smallest files of the fixed presets.",
  max: "max: the longest adaptation: slowest.",
};

function onPreset() {
  const p = $("preset").value;
  $("preset-hint").textContent = PRESET_HINTS[p] || p;
  $("budget-row").hidden = p === "none";
}

function onRateMode() {
  const mode = $("rate-mode").value;
  $("quality-row").hidden = mode !== "quality";
  $("target-row").hidden = mode === "quality";
  const units = { target_bytes: "bytes", target_bpp: "bpp", target_psnr: "dB" };
  $("target-unit").textContent = units[mode] || "";
  $("target").required = mode !== "quality";
}

// ------------------------------------------------------------------ choosing a file
function humanBytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KB";
  return (n / 1024 / 1024).toFixed(2) + " MB";
}

async function isBitstream(file) {
  if (file.name.toLowerCase().endsWith(".udic")) return true;
  const head = new Uint8Array(await file.slice(0, 4).arrayBuffer());
  return String.fromCharCode(...head) === "UDIC";
}

async function chooseFile(file) {
  if (!file) return;
  showError("");
  resetRun();
  if (await isBitstream(file)) { await decodeBitstream(file); return; }
  state.file = file;
  state.fileDims = null;
  let dims = "the browser cannot show this format; the server will read it";
  try {
    const bmp = await createImageBitmap(file);
    state.fileDims = { w: bmp.width, h: bmp.height };
    dims = `${bmp.width} × ${bmp.height} px (${((bmp.width * bmp.height) / 1e6).toFixed(2)} MP)`;
    bmp.close();
  } catch (e) { /* not an image the browser reads: the server decides */ }
  $("file-info").textContent = `${file.name || "pasted image"}: ${dims}, ${humanBytes(file.size)}`;
  $("options").hidden = false;
}

function setupDrop() {
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    chooseFile(ev.dataTransfer.files[0]);
  });
  // a file dropped anywhere else would make the browser navigate away from the page
  window.addEventListener("dragover", (ev) => ev.preventDefault());
  window.addEventListener("drop", (ev) => { ev.preventDefault(); if (ev.dataTransfer.files[0]) chooseFile(ev.dataTransfer.files[0]); });
  $("file-input").addEventListener("change", (ev) => chooseFile(ev.target.files[0]));
  document.addEventListener("paste", (ev) => {
    const file = [...(ev.clipboardData ? ev.clipboardData.files : [])][0];
    if (file) chooseFile(file);
  });
}

// ------------------------------------------------------------------ encode, poll, cancel
async function submitJob(ev) {
  ev.preventDefault();
  if (!state.file) return;
  showError("");
  const form = new FormData();
  form.append("file", state.file, state.file.name || "pasted.png");
  const mode = $("rate-mode").value;
  if (mode === "quality") form.append("quality", $("quality").value);
  else form.append(mode, $("target").value);
  form.append("adaptation", $("preset").value);
  if ($("preset").value !== "none" && $("budget").value) form.append("time_budget_s", $("budget").value);
  if ($("domain").value) form.append("domain", $("domain").value);
  $("encode").disabled = true;
  let job;
  try {
    job = await (await api("/v1/jobs", { method: "POST", body: form })).json();
  } catch (e) {
    showError(e.message);
    $("encode").disabled = false;
    return;
  }
  state.chart = [];
  $("progress-section").hidden = false;
  $("cancel").disabled = false;
  $("progress-text").textContent = "Queued: waiting for a worker…";
  $("progress-section").scrollIntoView({ block: "start" });
  drawChart();
  state.jobId = job.id;
  poll(job.id);
}

function describeProgress(job) {
  const p = job.progress;
  if (job.state === "queued") return "Queued: waiting for a worker…";
  if (!p) return "Starting…";
  const parts = [`Stage: ${p.stage.replace(/-/g, " ")}`];
  if (p.total) parts.push(`iteration ${p.iteration} of ${p.total}`);
  parts.push(`${p.elapsed_s.toFixed(1)} s`);
  if (p.bpp != null) parts.push(`now ${p.bpp.toFixed(3)} bpp`);
  if (p.psnr != null) parts.push(`${p.psnr.toFixed(2)} dB`);
  if (job.cancel_requested) parts.push("cancelling…");
  return parts.join(" · ");
}

async function poll(id) {
  let job;
  try {
    job = await (await api("/v1/jobs/" + id)).json();
  } catch (e) {
    if (state.jobId !== id) return;  // the user started over meanwhile
    showError("Lost track of the job: " + e.message);
    $("encode").disabled = false;
    return;
  }
  if (state.jobId !== id) return;  // the user started over meanwhile
  $("progress-text").textContent = describeProgress(job);
  const p = job.progress;
  const bar = $("progress-bar");
  if (p && p.total) { bar.max = p.total; bar.value = p.iteration; } else { bar.removeAttribute("value"); }
  if (p && (p.bpp != null || p.psnr != null)) {
    const last = state.chart[state.chart.length - 1];
    if (!last || last.t !== p.elapsed_s) state.chart.push({ t: p.elapsed_s, bpp: p.bpp, psnr: p.psnr });
    drawChart();
  }
  if (job.state === "finished") return finished(job);
  if (job.state === "failed" || job.state === "cancelled") {
    $("encode").disabled = false;
    $("cancel").disabled = true;
    const why = job.error ? job.error.detail : "";
    $("progress-text").textContent = job.state === "cancelled" ? "Cancelled." : "The encode failed" + (why ? ": " + why : ".");
    if (job.state === "failed") showError("The encode failed" + (why ? ": " + why : "."));
    return;
  }
  state.pollTimer = setTimeout(() => poll(id), POLL_MS);
}

async function cancelJob() {
  if (!state.jobId) return;
  $("cancel").disabled = true;
  try {
    await api("/v1/jobs/" + state.jobId, { method: "DELETE" });
  } catch (e) {
    showError("Could not cancel: " + e.message);
  }
}

// ------------------------------------------------------------------ the growing chart (canvas)
function drawChart() {
  const cv = $("chart");
  const dpr = window.devicePixelRatio || 1;
  const w = cv.clientWidth || 480, h = cv.clientHeight || 160;
  cv.width = Math.round(w * dpr); cv.height = Math.round(h * dpr);
  const g = cv.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#59636e";
  const pts = state.chart;
  cv.dataset.points = String(pts.length);
  if (pts.length === 0) { g.fillText("The estimate appears here while the image is adapted.", 10, h / 2); return; }
  const pad = { l: 40, r: 44, t: 10, b: 20 };
  const t0 = pts[0].t, tMax = Math.max(t0 + 1, ...pts.map((p) => p.t));
  const series = [["psnr", "#0b5cad", pad.l - 4, "right"], ["bpp", "#c2410c", w - pad.r + 4, "left"]];
  for (const [key, colour, labelX, align] of series) {
    const vals = pts.map((p) => p[key]).filter((v) => v != null);
    if (!vals.length) continue;
    let lo = Math.min(...vals), hi = Math.max(...vals);
    if (hi - lo < 1e-6) { lo -= 0.5 * Math.abs(lo || 1) * 0.02 + 0.01; hi += 0.01; }
    const x = (t) => pad.l + ((t - t0) / (tMax - t0)) * (w - pad.l - pad.r);
    const y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * (h - pad.t - pad.b);
    g.strokeStyle = colour; g.lineWidth = 2; g.beginPath();
    let first = true;
    for (const p of pts) {
      if (p[key] == null) continue;
      if (first) { g.moveTo(x(p.t), y(p[key])); first = false; } else g.lineTo(x(p.t), y(p[key]));
    }
    g.stroke();
    g.fillStyle = colour; g.textAlign = align;
    const digits = key === "bpp" ? 3 : 1;
    g.fillText(hi.toFixed(digits), labelX, pad.t + 8);
    g.fillText(lo.toFixed(digits), labelX, h - pad.b);
  }
  g.fillStyle = "#59636e"; g.textAlign = "center";
  g.fillText(`${t0.toFixed(1)} s to ${tMax.toFixed(1)} s`, w / 2, h - 5);
}

// ------------------------------------------------------------------ result
async function blobUrl(path) {
  const resp = await api(path);
  return URL.createObjectURL(await resp.blob());
}

function fig(label, value) {
  const div = document.createElement("div");
  const dt = document.createElement("dt"), dd = document.createElement("dd");
  dt.textContent = label; dd.textContent = value;
  div.append(dt, dd);
  return div;
}

function showFigures(items) {
  const dl = $("figures");
  dl.replaceChildren(...items.map(([k, v]) => fig(k, v)));
}

async function finished(job) {
  state.job = job;
  $("encode").disabled = false;
  $("cancel").disabled = true;
  $("progress-text").textContent = `Done in ${job.metrics.encode_seconds.toFixed(1)} s.`;
  let decodedUrl;
  try {
    decodedUrl = await blobUrl(job.links.image);
  } catch (e) {
    showError("The encode finished but its image could not be fetched: " + e.message);
    return;
  }
  const m = job.metrics;
  state.sources = {
    original: { label: "Original", url: URL.createObjectURL(state.file) },
    udic: { label: "udic", url: decodedUrl, psnr: m.psnr },
  };
  const adapt = m.adaptation === "none" ? "none" : `${m.adaptation}: kept ${m.adaptation_choice}, ${m.rd_saving_pct.toFixed(1)} % lower RD cost`;
  const items = [
    ["Size", `${m.bytes.toLocaleString()} bytes`],
    ["Bits per pixel", m.bpp.toFixed(4)],
    ["PSNR", m.psnr == null ? "lossless" : m.psnr.toFixed(2) + " dB"],
  ];
  if (m.ms_ssim != null) items.push(["MS-SSIM", m.ms_ssim.toFixed(4)]);
  items.push(
    ["Encode time", m.encode_seconds.toFixed(1) + " s"],
    ["Adaptation", adapt],
    ["Model", `${m.model}, quality ${m.quality}`],
    ["Image", `${m.width} × ${m.height} px`],
    ["Smaller than the upload", `${(100 * (1 - m.bytes / job.upload_bytes)).toFixed(1)} %`],
  );
  if (m.domain) items.push(["Domain adapter", m.domain]);
  showFigures(items);
  $("compare-block").hidden = false;
  $("compare").disabled = false;
  $("compare-status").textContent = "";
  $("compare-table").hidden = true;
  $("dl-udic").hidden = false;
  $("dl-png").hidden = false;
  showResult("original", "udic");
}

function fillSourceSelects(left, right) {
  for (const [id, chosen] of [["left-src", left], ["right-src", right]]) {
    const sel = $(id);
    sel.replaceChildren(...Object.entries(state.sources).map(([k, s]) => new Option(s.label, k, false, k === chosen)));
  }
}

function showResult(left, right) {
  $("result-section").hidden = false;
  const single = Object.keys(state.sources).length === 1;
  $("view").classList.toggle("single", single);
  $("sources").hidden = single;
  fillSourceSelects(left, right);
  setSources();
  $("result-section").scrollIntoView({ block: "start" });
  $("view").focus({ preventScroll: true });
}

function setSources() {
  const l = state.sources[$("left-src").value], r = state.sources[$("right-src").value];
  const tag = (s) => s.label + (s.psnr != null ? ` · ${s.psnr.toFixed(2)} dB` : "");
  $("img-left").src = l.url; $("img-left").alt = l.label;
  $("img-right").src = r.url; $("img-right").alt = r.label;
  $("tag-left").textContent = tag(l);
  $("tag-right").textContent = tag(r);
  const img = $("img-right");
  const ready = () => { state.view.w = img.naturalWidth; state.view.h = img.naturalHeight; layout(); };
  if (img.complete && img.naturalWidth) ready(); else img.onload = ready;
}

// ------------------------------------------------------------------ the split view: zoom and pan on the same point
function fitScale(width, height) {
  const v = state.view;
  const fit = Math.min(width / v.w, height / v.h);
  return fit >= 1 ? Math.floor(fit) : fit;  // a small image is enlarged by whole pixels, never smoothed
}

function scale() {
  const v = state.view, box = $("view");
  if (v.zoom) return v.zoom;  // 1:1: one image pixel per CSS pixel
  return fitScale(box.clientWidth, box.clientHeight);
}

function layout() {
  const v = state.view, box = $("view");
  if (!v.w) return;
  // the view is as tall as the fitted picture (no bands), at most 70 % of the window
  const tallest = Math.min(window.innerHeight * 0.7, box.clientWidth * (v.h / v.w), 34 * 16);
  box.style.height = Math.round(Math.min(tallest, v.h * fitScale(box.clientWidth, tallest))) + "px";
  const s = scale();
  const bw = box.clientWidth, bh = box.clientHeight;
  let ox, oy;
  if (!v.zoom) { ox = (bw - v.w * s) / 2; oy = (bh - v.h * s) / 2; } else {
    ox = bw / 2 - v.cx * v.w * s; oy = bh / 2 - v.cy * v.h * s;
    ox = Math.min(Math.max(ox, bw - v.w * s), 0) + (v.w * s < bw ? (bw - v.w * s) / 2 : 0);
    oy = Math.min(Math.max(oy, bh - v.h * s), 0) + (v.h * s < bh ? (bh - v.h * s) / 2 : 0);
  }
  for (const id of ["img-left", "img-right"]) {
    const img = $(id);
    img.style.width = v.w + "px"; img.style.height = v.h + "px";
    img.style.transform = `translate(${ox}px, ${oy}px) scale(${s})`;
  }
  $("layer-right").style.clipPath = `inset(0 0 0 ${v.split}%)`;
  $("layer-left").style.clipPath = `inset(0 ${100 - v.split}% 0 0)`;
  $("divider").style.left = v.split + "%";
  $("divider").setAttribute("aria-valuenow", String(Math.round(v.split)));
  box.classList.toggle("zoomed", v.zoom > 0);
  box.classList.toggle("pixelated", s >= 2);
  for (const b of document.querySelectorAll(".zoom button")) b.setAttribute("aria-pressed", String(Number(b.dataset.zoom) === v.zoom));
}

function setZoom(z) { state.view.zoom = z; layout(); }

function pointAt(ev) {
  // the image point (0..1) under the pointer, in the current layout
  const box = $("view").getBoundingClientRect(), img = $("img-right").getBoundingClientRect();
  return { x: (ev.clientX - img.left) / img.width, y: (ev.clientY - img.top) / img.height, inBox: ev.clientX - box.left };
}

function setupView() {
  const box = $("view"), divider = $("divider");
  let drag = null;
  divider.addEventListener("pointerdown", (ev) => {
    ev.stopPropagation(); divider.setPointerCapture(ev.pointerId); drag = { kind: "split" };
  });
  divider.addEventListener("pointermove", (ev) => {
    if (!drag || drag.kind !== "split") return;
    const r = box.getBoundingClientRect();
    state.view.split = Math.min(100, Math.max(0, (100 * (ev.clientX - r.left)) / r.width));
    layout();
  });
  divider.addEventListener("pointerup", () => { drag = null; });
  divider.addEventListener("keydown", (ev) => {
    const step = ev.shiftKey ? 10 : 2;
    const moves = { ArrowLeft: -step, ArrowRight: step, Home: -100, End: 100 };
    if (!(ev.key in moves)) return;
    ev.preventDefault();
    state.view.split = Math.min(100, Math.max(0, state.view.split + moves[ev.key]));
    layout();
  });
  box.addEventListener("pointerdown", (ev) => {
    box.setPointerCapture(ev.pointerId);
    drag = { kind: "pan", x: ev.clientX, y: ev.clientY, cx: state.view.cx, cy: state.view.cy, moved: false };
  });
  box.addEventListener("pointermove", (ev) => {
    if (!drag || drag.kind !== "pan") return;
    const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 4) drag.moved = true;
    if (!state.view.zoom || !drag.moved) return;
    box.classList.add("dragging");
    const s = scale();
    state.view.cx = drag.cx - dx / (state.view.w * s);
    state.view.cy = drag.cy - dy / (state.view.h * s);
    layout();
  });
  box.addEventListener("pointerup", (ev) => {
    box.classList.remove("dragging");
    if (drag && drag.kind === "pan" && !drag.moved && !state.view.zoom) {
      const p = pointAt(ev);
      state.view.cx = Math.min(1, Math.max(0, p.x)); state.view.cy = Math.min(1, Math.max(0, p.y));
      setZoom(1);
    }
    drag = null;
  });
  box.addEventListener("keydown", (ev) => {
    if (ev.target !== box || !state.view.zoom) return;
    const s = scale(), step = 60;
    const d = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[ev.key];
    if (!d) return;
    ev.preventDefault();
    state.view.cx = Math.min(1, Math.max(0, state.view.cx + d[0] / (state.view.w * s)));
    state.view.cy = Math.min(1, Math.max(0, state.view.cy + d[1] / (state.view.h * s)));
    layout();
  });
  for (const b of document.querySelectorAll(".zoom button")) b.addEventListener("click", () => setZoom(Number(b.dataset.zoom)));
  $("left-src").addEventListener("change", setSources);
  $("right-src").addEventListener("change", setSources);
  window.addEventListener("resize", () => { layout(); drawChart(); });
}

// ------------------------------------------------------------------ downloads
function saveBlob(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
}

function baseName() {
  const n = (state.file && state.file.name) || (state.job && state.job.id) || "image";
  return n.replace(/\.[^.]*$/, "");
}

async function download(kind) {
  try {
    if (kind === "udic") saveBlob(await (await api(state.job.links.bitstream)).blob(), baseName() + ".udic");
    else saveBlob(await (await api(state.job.links.image)).blob(), baseName() + ".udic.png");
  } catch (e) {
    showError("The download failed: " + e.message);
  }
}

// ------------------------------------------------------------------ the same-size comparison
async function compare() {
  const job = state.job, m = job.metrics;
  $("compare").disabled = true;
  $("compare-target").textContent = m.bytes.toLocaleString();
  const tbody = $("compare-table").tBodies[0];
  tbody.replaceChildren(compareRow({ label: "udic", setting: m.quality, bytes: m.bytes, bpp: m.bpp, psnr: m.psnr, ms_ssim: m.ms_ssim }, m));
  $("compare-table").hidden = false;
  for (const { codec, label } of state.config.compare_codecs) {
    $("compare-status").textContent = `Coding with ${label} at ${m.bytes.toLocaleString()} bytes (searching its quality)…`;
    const form = new FormData();
    form.append("file", state.file, state.file.name || "image.png");
    form.append("target_bytes", String(m.bytes));
    form.append("codec", codec);
    let r;
    try {
      r = await (await api("/v1/compare", { method: "POST", body: form })).json();
    } catch (e) {
      if (state.job !== job) return;
      $("compare-status").textContent = "";
      showError(`The ${label} comparison failed: ${e.message}`);
      $("compare").disabled = false;
      return;
    }
    if (state.job !== job) return;  // the user started over meanwhile
    state.sources[codec] = { label, url: r.image, psnr: r.psnr };
    tbody.append(compareRow(r, m));
    fillSourceSelects($("left-src").value, $("right-src").value);
  }
  $("compare-status").textContent = "Done. Choose JPEG, WebP or AVIF as Left or Right to see them beside udic.";
}

function compareRow(r, m) {
  const tr = document.createElement("tr");
  const diff = r.psnr != null && m.psnr != null ? m.psnr - r.psnr : null;
  let against = "—";
  let cls = "";
  if (r.label !== "udic" && diff != null) {
    against = diff >= 0 ? `${diff.toFixed(2)} dB better` : `${(-diff).toFixed(2)} dB worse`;
    cls = diff >= 0 ? "win" : "lose";
  }
  if (r.fits === false) against = "could not get this small (lowest quality shown)";
  const cells = [
    r.label, String(r.setting), r.bytes.toLocaleString(), r.bpp.toFixed(3),
    r.psnr == null ? "lossless" : r.psnr.toFixed(2) + " dB", r.ms_ssim == null ? "—" : r.ms_ssim.toFixed(4), against,
  ];
  cells.forEach((text, i) => {
    const td = document.createElement(i === 0 ? "th" : "td");
    if (i === 0) td.scope = "row";
    td.textContent = text;
    if (i === cells.length - 1 && cls) td.className = cls;
    tr.append(td);
  });
  return tr;
}

// ------------------------------------------------------------------ decode a .udic someone sent
async function decodeBitstream(file) {
  $("options").hidden = true;
  $("file-info").textContent = `${file.name}: a udic bitstream, ${humanBytes(file.size)}. Decoding…`;
  let url;
  try {
    const resp = await api("/v1/decode", { method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" } });
    url = URL.createObjectURL(await resp.blob());
  } catch (e) {
    $("file-info").textContent = `${file.name}: ${humanBytes(file.size)}`;
    showError("This file could not be decoded: " + e.message);
    return;
  }
  const img = new Image();
  img.src = url;
  await img.decode();
  const bpp = (file.size * 8) / (img.naturalWidth * img.naturalHeight);
  $("file-info").textContent = `${file.name}: decoded, ${img.naturalWidth} × ${img.naturalHeight} px.`;
  state.sources = { decoded: { label: "Decoded", url } };
  state.job = null;
  showFigures([["Size", `${file.size.toLocaleString()} bytes`], ["Bits per pixel", bpp.toFixed(4)], ["Image", `${img.naturalWidth} × ${img.naturalHeight} px`]]);
  $("compare-block").hidden = true;
  $("dl-udic").hidden = true;
  $("dl-png").hidden = true;
  state.view.split = 0;
  showResult("decoded", "decoded");
}

// ------------------------------------------------------------------ start over
function resetRun() {
  clearTimeout(state.pollTimer);
  state.jobId = null;
  state.view = { zoom: 0, cx: 0.5, cy: 0.5, split: 50, w: 0, h: 0 };
  $("progress-section").hidden = true;
  $("result-section").hidden = true;
  $("encode").disabled = false;
}

function startOver() {
  resetRun();
  state.file = null;
  state.job = null;
  $("options").hidden = true;
  $("file-info").textContent = "";
  $("file-input").value = "";
  showError("");
  window.scrollTo(0, 0);
  $("file-input").focus();
}

async function main() {
  setupDrop();
  setupView();
  $("key-form").addEventListener("submit", submitKey);
  $("key-change").addEventListener("click", () => askForKey(""));
  $("options").addEventListener("submit", submitJob);
  $("quality").addEventListener("input", () => { $("quality-out").textContent = $("quality").value; });
  $("rate-mode").addEventListener("change", onRateMode);
  $("preset").addEventListener("change", onPreset);
  $("cancel").addEventListener("click", cancelJob);
  $("dl-udic").addEventListener("click", () => download("udic"));
  $("dl-png").addEventListener("click", () => download("png"));
  $("compare").addEventListener("click", compare);
  $("again").addEventListener("click", startOver);
  try {
    await loadConfig();
    await loadDomains();
  } catch (e) {
    showError("Could not load the page's settings from the server: " + e.message);
  }
}

main();
