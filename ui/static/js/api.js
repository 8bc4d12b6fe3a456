// The REST API as the page uses it: the key (session storage), JSON requests with clear
// errors, the SSE answer stream (fetch, since EventSource cannot send a key), and uploads
// with progress (XMLHttpRequest, since fetch reports none).

const KEY = "quarry.key";
export const events = new EventTarget(); // "auth" (key refused), "offline", "online"

export function getKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key.trim());
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// FastAPI bodies: {"detail": "text"}, {"detail": {"message", "errors"}} or validation lists.
export function describe(status, body, fallback) {
  const detail = body && body.detail !== undefined ? body.detail : body;
  let text;
  if (typeof detail === "string") text = detail;
  else if (Array.isArray(detail)) {
    text = detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`).join("; ");
  } else if (detail && typeof detail === "object") text = detail.message || JSON.stringify(detail);
  text = text || fallback || `HTTP ${status}`;
  if (status === 401) return `The API key was refused: ${text}`;
  if (status === 403) return `Not allowed with this API key: ${text}`;
  return text;
}

function headers(extra = {}) {
  const h = { ...extra };
  const key = getKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

const UNREACHABLE = "Cannot reach the Quarry service. Is it running? (check the terminal where you started `make run`)";

async function failure(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  const error = new ApiError(res.status, describe(res.status, body, res.statusText));
  if (res.status === 401) events.dispatchEvent(new CustomEvent("auth", { detail: error.message }));
  return error;
}

async function send(method, path, { json, signal, accept } = {}) {
  const init = { method, signal, headers: headers(accept ? { Accept: accept } : {}) };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    events.dispatchEvent(new Event("offline"));
    throw new ApiError(0, UNREACHABLE);
  }
  if (!res.ok) throw await failure(res);
  events.dispatchEvent(new Event("online"));
  return res;
}

export async function api(method, path, json) {
  const res = await send(method, path, { json });
  if (res.status === 204) return null;
  const type = res.headers.get("Content-Type") || "";
  return type.includes("json") ? res.json() : res.text();
}

export async function text(path) {
  const res = await send("GET", path);
  return res.text();
}

export const enc = encodeURIComponent;

// POST a question and call onEvent(type, data) for every server-sent event.
export async function stream(path, json, onEvent, signal) {
  const res = await send("POST", path, { json, signal, accept: "text/event-stream" });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    await readEvents(reader, onEvent);
  } finally {
    reader.cancel().catch(() => {}); // an error or a stop ends the request, so the server stops working on it
  }
}

async function readEvents(reader, onEvent) {
  let buffer = "";
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, "The connection to the service was lost while the answer was streaming.");
    }
    if (chunk.done) break;
    buffer += chunk.value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(type, JSON.parse(data.join("\n")));
    }
  }
}

// Upload one file; onProgress(fraction) while the bytes go up. Resolves with the job.
export function upload(collection, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/collections/${enc(collection)}/documents?create=true`);
    for (const [name, value] of Object.entries(headers())) xhr.setRequestHeader(name, value);
    xhr.responseType = "json";
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    };
    xhr.onerror = () => {
      events.dispatchEvent(new Event("offline"));
      reject(new ApiError(0, UNREACHABLE));
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) return resolve(xhr.response);
      const error = new ApiError(xhr.status, describe(xhr.status, xhr.response, xhr.statusText));
      if (xhr.status === 401) events.dispatchEvent(new CustomEvent("auth", { detail: error.message }));
      reject(error);
    };
    const form = new FormData();
    form.append("files", file, file.name);
    xhr.send(form);
  });
}

// Save a text as a file the browser downloads.
export function download(name, content, type = "text/markdown") {
  const url = URL.createObjectURL(new Blob([content], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
