// Collections: create, delete, pick; upload files (drag and drop or picker) one request per
// file, with upload progress, indexing state and the error of each file; the document list
// with status, refreshed while documents are being indexed.

import { api, enc, upload } from "./api.js";
import { $, announce, bytes, clear, flash, h, keepFocus, plural, progressBar, when } from "./dom.js";

const PARALLEL = 2; // files uploading at once
const BUSY = ["queued", "parsing", "chunking", "embedding"]; // document states on the way to indexed

const view = {
  collections: [],
  current: () => "",
  select: () => {},
  onChange: () => {},
  uploads: [], // {id, file, collection, phase, fraction, message, job}
  queue: [],
  running: 0,
  poll: null,
  shown: "", // what the documents table shows (collection and rows), to skip identical re-renders
};

let uploadIds = 0;

export async function loadCollections() {
  const before = view.current();
  view.collections = await api("GET", "/v1/collections");
  view.onChange(view.collections); // the picker first: it decides which collection is current
  renderCollections();
  if (view.current() !== before && !$("#view-collections").hidden) loadDocuments();
  return view.collections;
}

function renderCollections() {
  const list = $("#collection-list");
  if (!view.collections.length) {
    clear(list, h("li", { class: "muted" }, "No collections yet: create one above."));
    return;
  }
  const current = view.current();
  keepFocus(list, () => clear(list, view.collections.map((c) => h("li", { class: c.name === current ? "current" : "" },
    h("button", { type: "button", class: "pick", "aria-current": c.name === current ? "true" : "false",
      dataset: { key: `pick-${c.name}` }, onclick: () => view.select(c.name) },
    h("strong", {}, c.name), h("span", { class: "muted" }, ` ${plural(c.document_count, "document")} · ${plural(c.chunk_count, "chunk")}`)),
    h("button", { type: "button", class: "ghost small danger needs-write", "aria-label": `Delete collection ${c.name}`,
      dataset: { key: `delete-${c.name}` }, onclick: (e) => removeCollection(c.name, e.currentTarget) }, "Delete")))));
}

// A delete waits for an ingest running on the same collection: say so while it waits.
function deleting(button) {
  if (!button) return;
  button.disabled = true;
  button.textContent = "Deleting…";
  button.title = "Waits for indexing in progress on this collection to finish";
}

async function removeCollection(name, button) {
  if (!window.confirm(`Delete the collection “${name}” and all its documents? This cannot be undone.`)) return;
  deleting(button);
  try {
    await api("DELETE", `/v1/collections/${enc(name)}`);
    view.uploads = view.uploads.filter((u) => u.collection !== name);
    await loadCollections();
  } catch (err) {
    flash(err.message);
    renderCollections();
  }
}

// ---- documents -----------------------------------------------------------------------

export async function loadDocuments() {
  const name = view.current();
  $("#documents-title").textContent = name ? `Documents in ${name}` : "Documents";
  const body = $("#document-table tbody");
  if (!name) {
    view.shown = "";
    clear(body, h("tr", {}, h("td", { colspan: 6, class: "muted" }, "Pick or create a collection.")));
    return;
  }
  let docs;
  try {
    docs = await api("GET", `/v1/collections/${enc(name)}/documents`);
  } catch (err) {
    if (name !== view.current()) return;
    view.shown = "";
    clear(body, h("tr", {}, h("td", { colspan: 6, class: "error" }, err.message)));
    return;
  }
  if (name !== view.current()) return;
  const shown = JSON.stringify([name, docs]);
  if (shown !== view.shown) {
    view.shown = shown;
    keepFocus(body, () => renderDocuments(body, name, docs));
  }
  clearTimeout(view.poll);
  if (docs.some((d) => BUSY.includes(d.status)) && !$("#view-collections").hidden) {
    view.poll = setTimeout(loadDocuments, 1500);
  }
}

function renderDocuments(body, name, docs) {
  clear(body, docs.length ? docs.map((d) => h("tr", { dataset: { status: d.status, source: d.source } },
    h("td", { class: "doc-name" }, h("span", { title: d.source }, d.title && d.title !== d.source ? `${d.title} ` : ""),
      h("span", { class: "muted" }, d.source)),
    h("td", {}, h("span", { class: `status ${d.status}` }, d.status), d.error ? h("div", { class: "error small" }, d.error) : null),
    h("td", { class: "num" }, d.chunk_count),
    h("td", { class: "num" }, bytes(d.size_bytes)),
    h("td", {}, when(d.updated_at)),
    h("td", {}, h("button", { type: "button", class: "ghost small danger needs-write", "aria-label": `Delete ${d.source}`,
      dataset: { key: `delete-doc-${d.id}` }, onclick: (e) => removeDocument(name, d, e.currentTarget) }, "Delete"))))
    : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No documents yet.")));
}

async function removeDocument(collection, doc, button) {
  if (!window.confirm(`Delete “${doc.source}” from ${collection}?`)) return;
  deleting(button);
  try {
    await api("DELETE", `/v1/collections/${enc(collection)}/documents/${doc.id}`);
  } catch (err) {
    flash(err.message);
  }
  view.shown = ""; // redraw the row even if nothing changed (a failed delete)
  await Promise.all([loadDocuments(), loadCollections()]);
}

// ---- uploads -------------------------------------------------------------------------

function renderUploads() {
  const list = $("#upload-list");
  clear(list, view.uploads.filter((u) => u.collection === view.current()).map((u) => {
    const label = {
      waiting: "waiting",
      uploading: `uploading ${Math.round(u.fraction * 100)}%`,
      queued: "uploaded · waiting for a worker",
      indexing: "indexing…",
      done: u.message || "indexed",
      failed: "failed",
    }[u.phase];
    return h("li", { class: `upload ${u.phase}`, dataset: { file: u.file.name, phase: u.phase } },
      h("div", { class: "upload-head" }, h("span", { class: "upload-name" }, u.file.name),
        h("span", { class: "muted" }, ` ${bytes(u.file.size)} · `), h("span", { class: "upload-state" }, label)),
      ["waiting", "uploading", "queued", "indexing"].includes(u.phase)
        ? progressBar(["queued", "indexing"].includes(u.phase) ? 1 : u.fraction, `${u.file.name} upload`) : null,
      u.phase === "failed" ? h("p", { class: "error upload-error" }, u.message) : null);
  }));
}

export function addFiles(files) {
  const collection = view.current();
  if (!collection) {
    flash("Pick or create a collection before uploading.");
    return;
  }
  for (const file of files) {
    const u = { id: ++uploadIds, file, collection, phase: "waiting", fraction: 0, message: "" };
    view.uploads.unshift(u);
    view.queue.push(u);
  }
  view.uploads = view.uploads.slice(0, 100);
  renderUploads();
  pump();
}

// At most PARALLEL uploads at once; a slot frees as soon as its bytes are up (indexing is
// the workers' business, followed without holding a slot).
function pump() {
  while (view.running < PARALLEL && view.queue.length) {
    const u = view.queue.shift();
    view.running++;
    let freed = false;
    const free = () => {
      if (freed) return;
      freed = true;
      view.running--;
      pump();
    };
    send(u, free).finally(free);
  }
}

async function send(u, uploaded) {
  u.phase = "uploading";
  renderUploads();
  try {
    const job = await upload(u.collection, u.file, (f) => {
      u.fraction = f;
      renderUploads();
    });
    uploaded();
    u.phase = "queued";
    renderUploads();
    loadDocuments();
    const final = await follow(job.id, (status) => {
      const phase = status === "queued" ? "queued" : "indexing";
      if (phase !== u.phase) {
        u.phase = phase;
        renderUploads();
      }
    });
    const failed = final.result?.failed?.[0];
    if (final.status !== "succeeded" || failed) {
      u.phase = "failed";
      u.message = failed ? failed.error : final.error || `the ingestion job ${final.status}`;
    } else {
      const r = final.result || {};
      u.phase = "done";
      u.message = r.unchanged?.length ? "unchanged (already indexed)" : `indexed · ${plural(r.chunks, "chunk")}`;
    }
  } catch (err) {
    u.phase = "failed";
    u.message = err.message;
  }
  renderUploads();
  announce(u.phase === "failed" ? `${u.file.name} failed: ${u.message}` : `${u.file.name}: ${u.message}`);
  if (u.collection === view.current()) loadDocuments();
  loadCollections().catch(() => {});
}

async function follow(jobId, onStatus) {
  for (;;) {
    const job = await api("GET", `/v1/jobs/${enc(jobId)}`);
    if (["succeeded", "failed", "cancelled"].includes(job.status)) return job;
    onStatus(job.status);
    await new Promise((r) => setTimeout(r, 700));
  }
}

// ---- wiring --------------------------------------------------------------------------

export function initCollections({ current, select, onChange }) {
  Object.assign(view, { current, select, onChange });
  $("#create-collection").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $("#new-collection");
    const name = input.value.trim();
    try {
      await api("POST", "/v1/collections", { name });
      input.value = "";
      await loadCollections();
      select(name);
    } catch (err) {
      flash(err.message);
    }
  });
  const zone = $("#dropzone");
  const picker = $("#file-input");
  zone.addEventListener("click", () => picker.click());
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      picker.click();
    }
  });
  picker.addEventListener("change", () => {
    addFiles([...picker.files]);
    picker.value = "";
  });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (e) => {
      e.preventDefault();
      zone.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) zone.addEventListener(type, () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    addFiles([...(e.dataTransfer?.files || [])]);
  });
  // a file dropped next to the zone must not navigate away from the page
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  $("#refresh-documents").addEventListener("click", () => Promise.all([loadDocuments(), loadCollections()]));
}

export function showCollections() {
  renderCollections();
  renderUploads();
  loadDocuments();
}
