// lanfer's page: send pictures to /v1/predict, draw each face's box, label, probabilities and attention,
// and keep a table of every row (downloadable as CSV). Plain JavaScript, no build step, nothing from a CDN.
"use strict";

// matplotlib's tab10, the colours lanfer.predict.annotate uses per predicted class
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];
const state = { classes: [], columns: [], rows: [], shots: 0,
                // webcam live mode: one frame in flight at a time, tracked and smoothed by the server's stream
                live: { on: false, id: "", frames: 0, started: 0, lastRows: [], lastMs: 0, errors: 0, run: 0 } };
// Live frames are sent at most this wide (a webcam's 640x480 as it is): the server's time grows with pixels.
const LIVE_MAX_WIDTH = 640;
const $ = (id) => document.getElementById(id);

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").classList.toggle("error", !!isError);
}

async function loadModel() {
  try {
    const r = await fetch("/v1/models");
    const body = await r.json();
    if (!r.ok) throw new Error(body.detail || r.statusText);
    const m = body.models[0];
    state.classes = m.classes;
    state.columns = m.columns;
    $("model").textContent = `${m.name}: ${m.classes.length} classes (${m.classes.join(", ")}), ` +
      `${m.input_size} px ${m.color} crops`;
  } catch (e) {
    $("model").textContent = "";
    setStatus(`cannot read the model record: ${e.message}`, true);
  }
}

async function predict(files) {
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  setStatus(`analysing ${files.length} picture${files.length > 1 ? "s" : ""}…`);
  let body;
  try {
    const r = await fetch("/v1/predict?attention=true", { method: "POST", body: form });
    body = await r.json().catch(() => ({ detail: r.statusText }));
    // lanfer's errors carry a sentence; FastAPI's own validation errors a list
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    if (!r.ok) throw new Error(`${r.status}: ${detail}`);
  } catch (e) {
    setStatus(e.message, true);
    return;
  }
  state.classes = body.classes;
  state.columns = body.columns;
  body.images.forEach((info, i) => {
    const rows = body.rows.filter((row) => row.source === info.source);
    showPicture(files[i], info, rows);
    state.rows.push(...rows);
  });
  renderTable();
  const faces = body.images.reduce((n, im) => n + im.faces, 0);
  setStatus(`${faces} face${faces === 1 ? "" : "s"} in ${body.images.length} picture` +
            `${body.images.length === 1 ? "" : "s"} (${Math.round(body.timing_ms.total)} ms)`);
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function showPicture(file, info, rows) {
  const block = el("article", "picture");
  block.appendChild(el("h3", "", `${info.source}: ${info.status === "ok" ? info.faces + " face" +
    (info.faces === 1 ? "" : "s") : info.status} (${info.width}×${info.height})`));
  const bodyDiv = el("div", "body");
  const photo = el("div", "photo");
  const img = el("img");
  img.alt = info.source;
  img.src = URL.createObjectURL(file);
  photo.appendChild(img);
  const faces = el("div", "faces");
  const faceRows = rows.filter((r) => r.status === "ok");
  faceRows.forEach((row) => {
    const k = state.classes.indexOf(row.label);
    const colour = PALETTE[k % PALETTE.length];
    const top = Math.max(row.y1, 0), left = Math.max(row.x1, 0);
    const box = el("div", "box");
    box.style.left = `${100 * left / info.width}%`;
    box.style.top = `${100 * top / info.height}%`;
    box.style.width = `${100 * (Math.min(row.x2, info.width) - left) / info.width}%`;
    box.style.height = `${100 * (Math.min(row.y2, info.height) - top) / info.height}%`;
    box.style.borderColor = colour;
    const tag = el("span", "", `${row.face}: ${row.label} ${row["prob_" + row.label].toFixed(2)}`);
    tag.style.background = colour;
    box.appendChild(tag);
    photo.appendChild(box);
    faces.appendChild(faceCard(row, img, colour));
  });
  bodyDiv.append(photo, faces);
  block.appendChild(bodyDiv);
  $("pictures").prepend(block);
}

function faceCard(row, img, colour) {
  const card = el("div", "face");
  const thumbs = el("div", "thumbs");
  // Attention off: the detector's box cut from the photo; on: the aligned crop under its attention map.
  const crop = el("canvas", "crop");
  crop.width = crop.height = 112;
  const draw = () => crop.getContext("2d").drawImage(img, row.x1, row.y1, row.x2 - row.x1, row.y2 - row.y1,
                                                     0, 0, 112, 112);
  if (img.complete) draw(); else img.addEventListener("load", draw);
  thumbs.appendChild(crop);
  if (row.attention_png) {
    const overlay = el("img", "overlay");
    overlay.alt = `attention of face ${row.face}`;
    overlay.src = row.attention_png;
    thumbs.appendChild(overlay);
  }
  card.appendChild(thumbs);
  const title = el("div", "title", `face ${row.face}: ${row.label}`);
  title.style.color = colour;
  card.appendChild(title);
  const pose = `yaw ${fmt(row.yaw, 0)}°, pitch ${fmt(row.pitch, 0)}°, roll ${fmt(row.roll, 0)}°`;
  card.appendChild(el("div", "pose", pose));
  const bars = el("div", "bars");
  state.classes.forEach((c, k) => {
    const p = row["prob_" + c];
    const bar = el("div", "bar");
    const track = el("div", "track");
    const fill = el("div", "fill");
    fill.style.width = `${100 * p}%`;
    fill.style.background = PALETTE[k % PALETTE.length];
    track.appendChild(fill);
    bar.append(el("span", "", c), track, el("span", "num", p.toFixed(3)));
    bars.appendChild(bar);
  });
  card.appendChild(bars);
  return card;
}

function fmt(v, digits) {
  // + 0 turns a rounded -0 into 0
  return v === null || v === undefined ? "" : (Number(Number(v).toFixed(digits)) + 0).toFixed(digits);
}

function renderTable() {
  const shown = ["source", "face", "label", ...state.classes.map((c) => "prob_" + c), "yaw", "pitch", "roll",
                 "score", "status"];
  const head = $("results").tHead, tbody = $("results").tBodies[0];
  head.innerHTML = "";
  const tr = el("tr");
  shown.forEach((c) => tr.appendChild(el("th", "", c)));
  head.appendChild(tr);
  tbody.innerHTML = "";
  state.rows.forEach((row) => {
    const r = el("tr");
    shown.forEach((c) => {
      const v = row[c];
      const digits = c.startsWith("prob_") || c === "score" ? 3 : 1;
      const text = typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(digits)) : (v ?? "");
      r.appendChild(el("td", typeof v === "number" ? "" : "text", text));
    });
    tbody.appendChild(r);
  });
  $("table-section").hidden = state.rows.length === 0;
  $("csv").disabled = state.rows.length === 0;
}

function csvCell(v) {
  if (v === null || v === undefined) return "";
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function csvText() {
  // The columns of `lanfer predict`'s predictions.csv, in its order
  const lines = [state.columns.join(",")];
  state.rows.forEach((row) => lines.push(state.columns.map((c) => csvCell(row[c])).join(",")));
  return lines.join("\n") + "\n";
}

function downloadCsv() {
  const a = el("a");
  a.href = URL.createObjectURL(new Blob([csvText()], { type: "text/csv" }));
  a.download = "predictions.csv";
  document.body.appendChild(a);
  a.click();
  a.remove();
}

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setStatus("this browser gives no camera access to this page (it needs the page opened from 127.0.0.1 " +
              "or over TLS)", true);
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    $("video").srcObject = stream;
    $("video").hidden = false;
    $("camera-snap").disabled = false;
    $("camera-live").disabled = false;
  } catch (e) {
    setStatus(`no webcam: ${e.message}`, true);
  }
}

function snapshot() {
  const video = $("video");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  canvas.toBlob((blob) => {
    state.shots += 1;
    predict([new File([blob], `webcam-${state.shots}.png`, { type: "image/png" })]);
  }, "image/png");
}

// -- webcam live mode: frames -> POST /v1/predict?stream=ID -> boxes and labels drawn over the video ----------

function toggleLive() {
  const live = state.live;
  live.on = !live.on;
  $("camera-live").setAttribute("aria-pressed", String(live.on));
  $("camera-live").textContent = live.on ? "Stop live labels" : "Live labels";
  $("live-overlay").hidden = !live.on;
  if (live.on) {
    // a new stream id each time: the server's tracks and smoothing start afresh
    live.id = `page-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
    live.frames = 0;
    live.errors = 0;
    live.started = performance.now();
    liveLoop();
  } else {
    $("live-overlay").getContext("2d").clearRect(0, 0, $("live-overlay").width, $("live-overlay").height);
    $("live-status").textContent = "";
  }
}

function grabFrame(video) {
  const scale = Math.min(1, LIVE_MAX_WIDTH / video.videoWidth);
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob((blob) => resolve({ blob, width: canvas.width,
                                                                      height: canvas.height }), "image/jpeg", 0.85));
}

async function liveLoop() {
  // A stop and a quick restart must not leave the old loop running beside the new one: each loop has a number.
  const live = state.live, video = $("video"), run = ++live.run;
  const going = () => live.on && live.run === run;
  while (going()) {
    if (!video.videoWidth) { await new Promise((r) => setTimeout(r, 100)); continue; }
    const frame = await grabFrame(video);
    const form = new FormData();
    form.append("files", frame.blob, `webcam-live-${live.frames}.jpg`);
    const t0 = performance.now();
    let r, body;
    try {
      r = await fetch(`/v1/predict?stream=${live.id}`, { method: "POST", body: form });
      body = await r.json().catch(() => ({ detail: r.statusText }));
    } catch (e) {
      r = null;
      body = { detail: e.message };
    }
    if (!going()) break;
    if (!r || !r.ok) {
      // busy (503): wait as the server says and go on; anything else stops live mode with the server's words
      if (r && r.status === 503 && live.errors < 20) {
        live.errors += 1;
        await new Promise((res) => setTimeout(res, 1000 * Number(r.headers.get("Retry-After") || 1)));
        continue;
      }
      const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      setStatus(`live labels stopped: ${r ? r.status + ": " : ""}${detail}`, true);
      toggleLive();
      break;
    }
    live.frames += 1;
    live.lastMs = performance.now() - t0;
    live.lastRows = body.rows.filter((row) => row.status === "ok");
    drawLive(live.lastRows, frame.width, frame.height);
    const fps = live.frames / ((performance.now() - live.started) / 1000);
    $("live-status").textContent = `live: ${live.lastRows.length} face${live.lastRows.length === 1 ? "" : "s"}, ` +
      `${fps.toFixed(1)} frames/s (${Math.round(body.timing_ms.total)} ms on the server)`;
  }
}

function drawLive(rows, width, height) {
  // The overlay canvas has the frame's pixel size and is stretched over the video like the video itself.
  const canvas = $("live-overlay");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, width, height);
  ctx.lineWidth = Math.max(2, width / 320);
  ctx.font = `${Math.max(12, Math.round(width / 40))}px system-ui, sans-serif`;
  ctx.textBaseline = "bottom";
  rows.forEach((row) => {
    const colour = PALETTE[state.classes.indexOf(row.label) % PALETTE.length];
    ctx.strokeStyle = colour;
    ctx.strokeRect(row.x1, row.y1, row.x2 - row.x1, row.y2 - row.y1);
    const text = `#${row.track_id} ${row.label} ${row["prob_" + row.label].toFixed(2)}`;
    const w = ctx.measureText(text).width + 6, h = parseInt(ctx.font, 10) + 4;
    const y = Math.max(row.y1, h);
    ctx.fillStyle = colour;
    ctx.fillRect(row.x1, y - h, w, h);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, row.x1 + 3, y - 1);
  });
}

function setup() {
  const drop = $("drop");
  $("files").addEventListener("change", (e) => { predict(Array.from(e.target.files)); e.target.value = ""; });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    predict(Array.from(e.dataTransfer.files).filter((f) => f.type.startsWith("image/")));
  });
  const toggle = () => document.body.classList.toggle("show-attention", $("attention").checked);
  $("attention").addEventListener("change", toggle);
  toggle();
  $("camera-start").addEventListener("click", startCamera);
  $("camera-snap").addEventListener("click", snapshot);
  $("camera-live").addEventListener("click", toggleLive);
  $("csv").addEventListener("click", downloadCsv);
  $("clear").addEventListener("click", () => {
    state.rows = [];
    $("pictures").innerHTML = "";
    renderTable();
    setStatus("");
  });
  loadModel();
}

setup();
