// Chat: ask, stream the answer and the plan, open citations and plan nodes. The
// conversation is kept in this tab's session storage, so a reload keeps it.

import { enc, events, getKey, stream } from "./api.js";
import { $, announce, clear, copy, h, keepFocus, plural } from "./dom.js";
import { renderGraph, STATE_LABEL } from "./graph.js";
import { renderCited } from "./markdown.js";
import { closeAnySource, closeSource, openSource } from "./passage.js";

const STORE = "quarry.chat";
const KEEP = 30; // messages kept across reloads

const chat = {
  messages: [], // {question, collection, status, text, citations, unsupported, plan, extras, evidence, ...}
  active: -1, // the message whose plan the side panel shows
  selected: null, // the node whose details show
  controller: null,
  collection: () => "",
};

function save() {
  const done = chat.messages.filter((m) => m.status !== "streaming").slice(-KEEP);
  try {
    sessionStorage.setItem(STORE, JSON.stringify(done));
  } catch {
    /* storage full: the conversation still shows, it just won't survive a reload */
  }
}

function load() {
  try {
    return JSON.parse(sessionStorage.getItem(STORE) || "[]");
  } catch {
    return [];
  }
}

// ---- rendering -----------------------------------------------------------------------

// While it streams, the answer is plain text; once complete, its markdown is rendered (sanitised).
function answerBody(m, i) {
  const streaming = m.status === "streaming" && !m.citations;
  const body = h("div", { class: streaming ? "answer streaming" : "answer md", id: `answer-${i}` });
  if (streaming) {
    body.append(m.text || "", h("span", { class: "caret", "aria-hidden": "true" }));
    if (!m.text) body.prepend(h("span", { class: "muted" }, m.plan.nodes.length ? "Searching… " : "Planning… "));
  } else body.append(renderCited(m.text || "", m.citations, (c) => openSource(m.collection, c), `cite-${i}`));
  return body;
}

function messageView(m, i) {
  const notes = [];
  if (m.error) notes.push(h("p", { class: "error" }, m.error));
  if (m.partial) notes.push(h("p", { class: "note" }, "Partial answer: a time budget ran out; it uses the evidence gathered so far."));
  if (m.unsupported?.length) {
    notes.push(h("details", { class: "note" }, h("summary", {}, `${m.unsupported.length} sentence(s) no citation supports`),
      h("ul", {}, m.unsupported.map((s) => h("li", {}, s)))));
  }
  const sources = (m.citations || []).map((c) =>
    h("li", {}, h("a", { href: "#", class: "source-link", dataset: { n: c.n, key: `source-${i}-${c.n}` },
      onclick: (e) => { e.preventDefault(); openSource(m.collection, c); } }, `[${c.n}] ${c.title || c.document}`),
    h("span", { class: "muted" }, ` — ${c.snippet.slice(0, 140)}${c.snippet.length > 140 ? "…" : ""}`)));
  const nodes = m.plan.nodes.length;
  const actions = h("div", { class: "actions" },
    !m.text ? null : h("button", { type: "button", class: "ghost small copy", disabled: m.status === "streaming",
      dataset: { key: `copy-${i}` },
      onclick: async (e) => {
        const ok = await copy(m.text || "");
        e.target.textContent = ok ? "Copied" : "Copy failed";
        setTimeout(() => { e.target.textContent = "Copy answer"; }, 1500);
      } }, "Copy answer"),
    nodes ? h("button", { type: "button", class: "ghost small", onclick: () => showPlan(i), dataset: { key: `plan-${i}` },
      "aria-pressed": chat.active === i ? "true" : "false" }, `Plan (${plural(nodes, "node")})`) : null,
    m.timings?.total ? h("span", { class: "muted" }, `${m.timings.total.toFixed(1)} s`) : null,
    m.status === "streaming" ? h("span", { class: "muted", role: "status" }, "streaming…") : null);
  return [
    h("li", { class: "msg user" }, h("div", { class: "bubble" }, m.question),
      h("div", { class: "meta muted" }, m.collection)),
    h("li", { class: `msg bot ${m.status}`, dataset: { index: i, status: m.status, tokens: m.tokens || 0,
      plans: m.plans || 0 } },
      answerBody(m, i), ...notes,
      sources.length ? h("ol", { class: "sources", "aria-label": "Sources" }, sources) : null, actions),
  ];
}

function renderMessages() {
  const list = $("#messages");
  const empty = $("#chat-empty");
  keepFocus(list, () => {
    clear(list, empty);
    empty.hidden = chat.messages.length > 0;
    chat.messages.forEach((m, i) => list.append(...messageView(m, i)));
  });
}

// Re-render one message in place (cheap enough per event; tokens take the fast path).
function refresh(i) {
  const item = $("#messages").querySelector(`li.msg.bot[data-index="${i}"]`);
  if (!item) return renderMessages();
  keepFocus(item.parentElement, () => item.replaceWith(messageView(chat.messages[i], i)[1]));
}

function appendToken(i, piece) {
  const body = $(`#answer-${i}`);
  const caret = body?.querySelector(".caret");
  if (!caret) return refresh(i);
  body.querySelector(".muted")?.remove();
  caret.before(piece);
}

function renderPlan() {
  const m = chat.messages[chat.active];
  const graph = $("#plan-graph");
  const summary = $("#plan-summary");
  if (!m) {
    clear(graph, h("p", { class: "muted" }, "The plan of the latest question shows here as it grows."));
    summary.textContent = "";
    $("#node-detail").hidden = true;
    return;
  }
  renderGraph(graph, { ...m.plan, pending: m.status === "streaming" }, {
    selected: chat.selected,
    onSelect: (id) => selectNode(id),
  });
  const counts = {};
  for (const n of m.plan.nodes) counts[n.state] = (counts[n.state] || 0) + 1;
  summary.textContent = m.plan.nodes.length
    ? `${plural(m.plan.nodes.length, "node")} · ` +
      Object.entries(counts).map(([s, c]) => `${c} ${STATE_LABEL[s] || s}`).join(", ")
    : "";
  renderNode();
}

function nodeEvidence(m, node) {
  const extra = m.extras[node.id];
  if (extra?.evidence?.length) return extra.evidence;
  const ids = new Set(node.evidence_ids || []);
  return (m.evidence || []).filter((e) => e.node_id === node.id || ids.has(e.chunk_id));
}

function renderNode() {
  const box = $("#node-detail");
  const m = chat.messages[chat.active];
  const node = m?.plan.nodes.find((n) => n.id === chat.selected);
  if (!node) {
    box.hidden = true;
    return;
  }
  const queries = m.extras[node.id]?.queries?.length ? m.extras[node.id].queries : node.queries || [];
  const evidence = nodeEvidence(m, node);
  box.hidden = false;
  clear(box,
    h("div", { class: "panel-head" }, h("h3", {}, `${node.id} · ${STATE_LABEL[node.state] || node.state}`),
      h("button", { type: "button", class: "ghost small", "aria-label": "Close the node",
        onclick: () => closeNode() }, "✕")),
    h("p", { class: "node-question" }, node.question),
    node.parents?.length ? h("p", { class: "muted" }, `after ${node.parents.join(", ")}`) : null,
    h("h4", {}, "Queries"),
    queries.length ? h("ul", { class: "queries" }, queries.map((q) => h("li", {}, q))) : h("p", { class: "muted" }, "none yet"),
    h("h4", {}, "Answer"),
    node.answer ? h("p", { class: "node-answer" }, node.answer)
      : h("p", { class: "muted" }, node.state === "running" || node.state === "waiting" ? "not yet" : "no answer"),
    node.error ? h("p", { class: "error" }, node.error) : null,
    h("h4", {}, `Evidence (${evidence.length})`),
    evidence.length
      ? h("ol", { class: "evidence" }, evidence.map((e) => h("li", {},
        h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); openSource(m.collection, e); } }, e.title || e.document),
        h("span", { class: "muted" }, ` — ${e.text.slice(0, 160)}${e.text.length > 160 ? "…" : ""}`))))
      : h("p", { class: "muted" }, "none"),
    node.seconds != null ? h("p", { class: "muted" }, `${node.seconds.toFixed(2)} s${node.worker ? ` on ${node.worker}` : ""}`) : null,
  );
}

// Close the node's details and give focus back to its node in the graph.
function closeNode() {
  const id = chat.selected;
  chat.selected = null;
  renderPlan();
  if (id) $("#plan-graph").querySelector(`[data-node="${CSS.escape(id)}"]`)?.focus();
}

function selectNode(id) {
  chat.selected = chat.selected === id ? null : id;
  renderPlan();
  if (chat.selected) $("#node-detail").scrollIntoView({ block: "nearest" });
}

function showPlan(i) {
  chat.active = i;
  chat.selected = null;
  renderPlan();
  renderMessages();
  $("#plan-graph").scrollIntoView({ block: "nearest" });
}

// ---- asking --------------------------------------------------------------------------

function onEvent(m, i, type, data) {
  if (chat.messages[i] !== m) return; // the conversation was cleared meanwhile
  switch (type) {
    case "plan":
      m.plan = { nodes: data.nodes, edges: data.edges };
      m.plans = (m.plans || 0) + 1;
      break;
    case "node_started": {
      const node = m.plan.nodes.find((n) => n.id === data.node_id);
      if (node) node.state = "running";
      break;
    }
    case "node_evidence":
      m.extras[data.node_id] = { queries: data.queries, evidence: data.evidence };
      break;
    case "node_answer":
      m.plan.nodes = m.plan.nodes.map((n) => (n.id === data.node.id ? data.node : n));
      break;
    case "token":
      m.text += data.text;
      m.tokens = (m.tokens || 0) + 1;
      appendToken(i, data.text);
      return;
    case "citations":
      m.citations = data.citations;
      m.unsupported = data.unsupported;
      break;
    case "done": {
      const a = data.answer;
      Object.assign(m, {
        text: a.answer, citations: a.citations, unsupported: a.unsupported, evidence: a.evidence,
        plan: { nodes: a.nodes, edges: a.edges }, partial: a.partial, extractive: a.extractive,
        timings: a.timings, status: "done",
      });
      break;
    }
    case "error":
      m.error = data.message;
      m.status = "error";
      break;
    default:
      return;
  }
  if (type !== "token") {
    refresh(i);
    if (chat.active === i) renderPlan();
  }
}

async function ask(question) {
  const collection = chat.collection();
  if (!getKey() || !collection) {
    const error = getKey() ? "Pick a collection first (or create one under Collections)."
      : "Enter an API key first (the API key button, top right).";
    if (!getKey()) events.dispatchEvent(new CustomEvent("auth", { detail: "Enter an API key to ask questions." }));
    const m = { question, collection: collection || "—", status: "error", text: "", plan: { nodes: [], edges: [] },
      extras: {}, error };
    chat.messages.push(m);
    renderMessages();
    return;
  }
  const m = { question, collection, status: "streaming", text: "", citations: null, unsupported: [],
    plan: { nodes: [], edges: [] }, extras: {}, evidence: [] };
  chat.messages.push(m);
  const i = chat.messages.length - 1;
  chat.active = i;
  chat.selected = null;
  renderMessages();
  renderPlan();
  $("#messages").lastElementChild.scrollIntoView({ block: "end" });
  busy(true);
  chat.controller = new AbortController();
  try {
    await stream(`/v1/collections/${enc(collection)}/ask/stream`, { question },
      (type, data) => onEvent(m, i, type, data), chat.controller.signal);
    if (m.status === "streaming") {
      m.status = "error";
      m.error = "The stream ended before the answer was complete.";
    }
  } catch (err) {
    m.status = "error";
    m.error = err.name === "AbortError" ? "Stopped." : err.message;
  } finally {
    chat.controller = null;
    const stopFocused = document.activeElement === $("#stop-button");
    busy(false);
    if (stopFocused) $("#question").focus();
    if (chat.messages[i] === m) {
      refresh(i);
      renderPlan();
      announce(m.error ? `The question failed: ${m.error}` : "The answer is ready.");
    }
    save();
  }
}

function busy(on) {
  $("#ask-button").disabled = on;
  $("#stop-button").hidden = !on;
  $("#ask-form").setAttribute("aria-busy", on ? "true" : "false");
}

export function initChat(currentCollection) {
  chat.collection = currentCollection;
  chat.messages = load();
  chat.active = chat.messages.length - 1;
  renderMessages();
  renderPlan();
  const input = $("#question");
  $("#ask-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const question = input.value.trim();
    if (!question || chat.controller) return;
    input.value = "";
    ask(question);
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("#ask-form").requestSubmit();
    }
  });
  $("#stop-button").addEventListener("click", () => chat.controller?.abort());
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(redrawPlan, 150);
  });
  $("#clear-chat").addEventListener("click", () => {
    chat.controller?.abort();
    chat.messages = [];
    chat.active = -1;
    chat.selected = null;
    save();
    renderMessages();
    renderPlan();
    closeSource();
    input.focus();
  });
}

// Draw the plan again for the box's current size (the view was hidden, or the window resized).
export function redrawPlan() {
  if (!$("#view-chat").hidden) renderPlan();
}

export function closeDetails() {
  if (closeAnySource()) return;
  if (chat.selected) closeNode();
}
