// The source panel: a cited passage (or a node's evidence) in its document, with some
// context around it, the passage marked and the cited span highlighted.

import { api, enc } from "./api.js";
import { $, clear, h } from "./dom.js";
import { renderHighlighted } from "./markdown.js";

const CONTEXT = 320; // characters of the document shown either side of the passage

let current = 0; // the latest request wins when several are opened quickly
const openers = new WeakMap(); // panel -> the control that opened it, to return focus on close

// ref: {document_id, document, title, start_char, end_char, span_start?, span_end?, n?}
// `panel` is a source panel: an element with a `.source-title` and a `.source-body`.
export async function openSource(collection, ref, panel = $("#source-panel")) {
  const body = panel.querySelector(".source-body");
  const ticket = ++current;
  if (document.activeElement && !panel.contains(document.activeElement)) openers.set(panel, document.activeElement);
  panel.hidden = false;
  panel.querySelector(".source-title").textContent = ref.n ? `Source [${ref.n}]` : "Source";
  clear(body, h("p", { class: "muted" }, `Loading ${ref.title || ref.document}…`));
  const from = Math.max(0, ref.start_char - CONTEXT);
  const to = ref.end_char + CONTEXT;
  let doc;
  try {
    doc = await api("GET", `/v1/collections/${enc(collection)}/documents/${ref.document_id}?start=${from}&end=${to}`);
  } catch (err) {
    if (ticket === current) clear(body, h("p", { class: "error", role: "alert" }, `Could not open the source: ${err.message}`));
    return;
  }
  if (ticket !== current) return;
  const text = doc.text;
  const passage = [ref.start_char - from, Math.min(text.length, ref.end_char - from)];
  const hasSpan = ref.span_start !== null && ref.span_start !== undefined && ref.span_end > ref.span_start;
  const span = hasSpan ? [ref.span_start - from, Math.min(text.length, ref.span_end - from)] : passage;
  // the window's markdown rendered (sanitised), the passage and the cited span marked in it
  const quote = h("blockquote", { class: "passage-text md" });
  if (from > 0) quote.append(h("p", { class: "context" }, "…"));
  quote.append(renderHighlighted(text, passage, span));
  if (text.length === to - from) quote.append(h("p", { class: "context" }, "…")); // the window was full: the document goes on
  clear(
    body,
    h("p", { class: "doc-title" }, h("strong", {}, doc.title || doc.source)),
    h("p", { class: "muted doc-meta" }, `${doc.source} · characters ${ref.start_char}–${ref.end_char}`,
      hasSpan ? ` · cited span ${ref.span_start}–${ref.span_end}` : ""),
    quote,
  );
  panel.focus({ preventScroll: true });
  quote.querySelector("mark.span")?.scrollIntoView({ block: "nearest" });
  panel.scrollIntoView({ block: "nearest" });
}

export function closeSource(panel = $("#source-panel")) {
  current++;
  const hadFocus = panel.contains(document.activeElement);
  panel.hidden = true;
  const opener = openers.get(panel);
  if (hadFocus || document.activeElement === document.body) {
    if (opener?.isConnected) opener.focus();
    else $("#question")?.focus({ preventScroll: true });
  }
}

export function initSources() {
  for (const panel of document.querySelectorAll(".source-panel")) {
    panel.querySelector(".source-close").addEventListener("click", () => closeSource(panel));
  }
}

// Close whichever source panel is open; false when none was.
export function closeAnySource() {
  const open = [...document.querySelectorAll(".source-panel")].filter((p) => !p.hidden);
  open.forEach((p) => closeSource(p));
  return open.length > 0;
}
