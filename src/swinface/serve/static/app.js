// The swinface page: plain JavaScript, no outside resources.
// Every piece of text that comes from a user or the API is set with textContent,
// never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "text") node.textContent = v;
    else if (k === "className") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function say(text, ok = false) {
  const box = $("message");
  box.textContent = text;
  box.className = ok ? "ok" : "";
  box.hidden = !text;
}

function describeError(status, body) {
  let detail = body && body.detail;
  if (Array.isArray(detail)) detail = detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  const plain = {
    401: "This needs the API key (type it in at the top).",
    403: "The API key is not valid.",
    413: "Too large.",
    503: "The service is busy; try again in a moment.",
  }[status];
  return [plain, detail].filter(Boolean).join(" ") || `The request failed (${status}).`;
}

async function api(method, path, body, needsKey = false) {
  const headers = {};
  const key = $("api-key").value.trim();
  if (key) headers["X-API-Key"] = key;
  else if (needsKey) throw new Error("This needs the API key (type it in at the top).");
  let response;
  try {
    response = await fetch(path, { method, headers: body instanceof FormData ? headers : { ...headers, "Content-Type": "application/json" }, body: body instanceof FormData || body === undefined ? body : JSON.stringify(body) });
  } catch (err) {
    throw new Error("The service cannot be reached.");
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (err) { data = { detail: text }; }
  if (!response.ok) throw new Error(describeError(response.status, data));
  return data;
}

function form(fields) {
  const f = new FormData();
  for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null && v !== "") f.append(k, v);
  return f;
}

// ---------------------------------------------------------------- analyse

function bar(label, value) {
  const fill = el("div", { className: "fill" });
  fill.style.width = `${Math.round(value * 100)}%`;
  return el("div", { className: "bar" }, [
    el("span", { text: label }),
    el("div", { className: "track" }, [fill]),
    el("span", { text: `${Math.round(value * 100)}%` }),
  ]);
}

function faceCard(face, index) {
  const card = el("div", { className: "face-card" });
  card.append(el("h4", { text: `Face ${index + 1}` }));
  card.append(el("div", { className: "age", text: `Age ${Math.round(face.age)}` }));
  card.append(el("div", { className: "gender", text: `${face.gender} (${Math.round(face.gender_probability * 100)}%)` }));
  card.append(el("div", { className: "expression", text: `Expression: ${face.expression}` }));
  const probs = Object.entries(face.expression_probabilities).sort((a, b) => b[1] - a[1]);
  for (const [label, p] of probs) card.append(bar(label, p));
  const present = Object.entries(face.attributes).filter(([, p]) => p >= 0.5).sort((a, b) => b[1] - a[1]);
  const attrs = el("div", { className: "attrs", text: present.length ? "" : "No attribute above 50%." });
  for (const [name] of present) attrs.append(el("span", { className: "tag", text: name.replaceAll("_", " ") }));
  card.append(attrs);
  return card;
}

async function drawPhoto(file, faces) {
  const bitmap = await createImageBitmap(file);
  const canvas = $("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const w = Math.max(2, bitmap.width / 250);
  faces.forEach((face, i) => {
    const [x1, y1, x2, y2] = face.box;
    ctx.lineWidth = w;
    ctx.strokeStyle = "#22c55e";
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    ctx.fillStyle = "#ef4444";
    for (const [x, y] of face.landmarks || []) {
      ctx.beginPath();
      ctx.arc(x, y, w * 1.5, 0, 2 * Math.PI);
      ctx.fill();
    }
    ctx.font = `${Math.round(w * 8)}px sans-serif`;
    ctx.fillStyle = "#22c55e";
    ctx.fillText(String(i + 1), x1 + w, Math.max(y1 - w * 2, w * 8));
  });
}

async function analyse(file) {
  say("");
  $("faces").replaceChildren(el("p", { text: "Analysing…" }));
  try {
    const data = await api("POST", "/v1/analyze", form({ images: file }));
    const photo = data.photos[0];
    if (photo.error) throw new Error(photo.error);
    await drawPhoto(file, photo.faces);
    const cards = photo.faces.map(faceCard);
    $("faces").replaceChildren(...(cards.length ? cards : [el("p", { text: "No face found in this photo." })]));
  } catch (err) {
    $("faces").replaceChildren();
    say(err.message);
  }
}

$("photo-input").addEventListener("change", (e) => e.target.files[0] && analyse(e.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files[0]) analyse(e.dataTransfer.files[0]);
});

// ---------------------------------------------------------------- compare

$("compare-btn").addEventListener("click", async () => {
  say("");
  const a = $("compare-a").files[0];
  const b = $("compare-b").files[0];
  if (!a || !b) return say("Choose two photos to compare.");
  try {
    const r = await api("POST", "/v1/verify", form({ a, b }));
    const verdict = r.same ? "the same person" : "different people";
    $("compare-result").textContent = `Similarity ${r.similarity.toFixed(3)} (threshold ${r.threshold}): ${verdict}.`;
  } catch (err) {
    $("compare-result").textContent = "";
    say(err.message);
  }
});

// ---------------------------------------------------------------- gallery

const gallery = () => encodeURIComponent($("gallery-name").value.trim());

async function refreshSubjects() {
  const list = $("subjects");
  try {
    const subjects = await api("GET", `/v1/galleries/${gallery()}/subjects`);
    list.replaceChildren(...subjects.map((s) => {
      const del = el("button", { type: "button", className: "danger", text: "Delete" });
      del.addEventListener("click", () => deleteSubject(s.subject_id));
      return el("li", { className: "subject" }, [
        el("span", { className: "subject-name", text: s.name }),
        el("span", { className: "unknown", text: ` (${s.subject_id}, ${s.embeddings} photo${s.embeddings === 1 ? "" : "s"})` }),
        del,
      ]);
    }));
  } catch (err) {
    list.replaceChildren(el("li", { className: "unknown", text: err.message }));
  }
}

async function deleteSubject(id) {
  try {
    await api("DELETE", `/v1/galleries/${gallery()}/subjects/${encodeURIComponent(id)}`, undefined, true);
    say(`Deleted ${id}.`, true);
  } catch (err) { say(err.message); }
  refreshSubjects();
}

$("create-gallery").addEventListener("click", async () => {
  try {
    await api("POST", "/v1/galleries", { name: $("gallery-name").value.trim() }, true);
    say(`Gallery ${$("gallery-name").value.trim()} created.`, true);
  } catch (err) { say(err.message); }
  refreshSubjects();
});

$("delete-gallery").addEventListener("click", async () => {
  try {
    await api("DELETE", `/v1/galleries/${gallery()}`, undefined, true);
    say("Gallery deleted.", true);
  } catch (err) { say(err.message); }
  refreshSubjects();
});

$("refresh-gallery").addEventListener("click", refreshSubjects);

$("enrol-btn").addEventListener("click", async () => {
  say("");
  const photo = $("enrol-photo").files[0];
  if (!photo) return say("Choose a photo of the person to enrol.");
  try {
    const r = await api("POST", `/v1/galleries/${gallery()}/subjects`,
      form({ subject_id: $("enrol-id").value.trim(), name: $("enrol-name").value, images: photo }), true);
    say(`Enrolled ${r.subject.name}.`, true);
  } catch (err) { say(err.message); }
  refreshSubjects();
});

$("search-btn").addEventListener("click", async () => {
  say("");
  const photo = $("search-photo").files[0];
  const out = $("search-results");
  if (!photo) return say("Choose a photo to search with.");
  try {
    const r = await api("POST", `/v1/galleries/${gallery()}/search`, form({ image: photo, top_k: 3 }));
    if (!r.faces.length) return out.replaceChildren(el("li", { className: "unknown", text: "No face found in this photo." }));
    out.replaceChildren(...r.faces.map((f) => {
      const item = el("li", { className: "match" });
      if (f.identity) {
        item.append(el("span", { className: "same match-name", text: f.name }));
        item.append(el("span", { text: ` — similarity ${f.candidates[0].similarity.toFixed(3)}` }));
      } else {
        item.append(el("span", { className: "unknown", text: "Unknown" }));
        if (f.candidates.length) {
          const c = f.candidates[0];
          item.append(el("span", { text: ` — closest: ${c.name} (${c.similarity.toFixed(3)}, below ${r.threshold})` }));
        }
      }
      return item;
    }));
  } catch (err) {
    out.replaceChildren();
    say(err.message);
  }
});

refreshSubjects();
