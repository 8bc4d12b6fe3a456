// The page: tabs, the collection picker, the API key, service health and errors.

import { api, events, getKey, setKey } from "./api.js";
import { closeDetails, initChat, redrawPlan } from "./chat.js";
import { initCollections, loadCollections, loadDocuments, showCollections } from "./collections.js";
import { $, clear, h, plural } from "./dom.js";
import { closeAnySource, initSources } from "./passage.js";
import { initResearch, showResearch } from "./research.js";

const PICKED = "quarry.collection";
const VIEWS = ["chat", "collections", "research"];

function current() {
  return $("#collection-picker").value || "";
}

function select(name) {
  sessionStorage.setItem(PICKED, name);
  const picker = $("#collection-picker");
  if ([...picker.options].some((o) => o.value === name)) picker.value = name;
  showCollections();
}

function fillPicker(collections, empty = "no collections") {
  const picker = $("#collection-picker");
  const wanted = picker.value || sessionStorage.getItem(PICKED) || "";
  clear(picker, collections.length ? collections.map((c) => h("option", { value: c.name }, c.name))
    : h("option", { value: "" }, empty));
  if (collections.some((c) => c.name === wanted)) picker.value = wanted;
  else if (collections.length) {
    // nothing picked yet in this tab: the collection with the most in it, not an empty one
    picker.value = collections.reduce((a, b) => (b.chunk_count > a.chunk_count ? b : a)).name;
  }
}

// ---- errors and health ---------------------------------------------------------------

function banner(message, kind = "") {
  $("#banner-text").textContent = message;
  $("#banner-text").dataset.kind = kind;
  $("#banner").hidden = !message;
}

let healthTimer = null;

function markDown() {
  const badge = $("#health");
  if (badge.textContent === "unreachable") return;
  badge.className = "health down";
  badge.textContent = "unreachable";
  badge.title = "The service does not answer";
}

// Health every 15 s, every 4 s while the service is unreachable; back online clears the banner.
async function checkHealth() {
  clearTimeout(healthTimer);
  const badge = $("#health");
  let next = 15000;
  try {
    const res = await fetch("/v1/health");
    const body = await res.json();
    const ok = body.status === "ok";
    const label = ok ? `ready · ${plural(body.workers, "worker")}` : "degraded";
    if (badge.textContent !== label) { // a status region: rewrite it only when it changes
      badge.className = `health ${ok ? "ok" : "degraded"}`;
      badge.textContent = label;
    }
    badge.title = ok ? "Database, Redis and workers reachable"
      : `Degraded: ${Object.entries(body.details || {}).map(([k, v]) => `${k}: ${v}`).join("; ") || "no worker"}`;
    if ($("#banner-text").dataset.kind === "offline") banner("");
  } catch {
    markDown();
    next = 4000;
  }
  healthTimer = setTimeout(checkHealth, next);
}

// ---- the API key ---------------------------------------------------------------------

function openKeyDialog(message) {
  const dialog = $("#key-dialog");
  if (!dialog.open) $("#key-input").value = getKey(); // never wipe a key being typed
  $("#key-error").textContent = message || "";
  $("#key-error").hidden = !message;
  if (!dialog.open) dialog.showModal();
  $("#key-input").focus();
}

async function start() {
  try {
    const me = await api("GET", "/v1/me");
    document.body.dataset.write = me.write ? "yes" : "no";
    $("#key-button").title = `Tenant ${me.tenant}, ${me.admin ? "admin" : `${me.rights} key`}`;
    await loadCollections();
  } catch (err) {
    if (err.status !== 401) banner(err.message);
    return;
  }
  banner("");
  if (!$("#view-collections").hidden) showCollections();
  if (!$("#view-research").hidden) showResearch();
}

function initKey() {
  // `make run` prints a link with the key in the fragment (never sent to the server): take it, then drop it
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("key")) {
    setKey(fragment.get("key"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  const dialog = $("#key-dialog");
  $("#key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("#key-input").value.trim();
    if (!key) return;
    setKey(key);
    dialog.close();
    start();
  });
  $("#key-forget").addEventListener("click", () => {
    setKey("");
    location.reload(); // nothing fetched with the old key stays on screen
  });
  $("#key-cancel").addEventListener("click", () => dialog.close());
  $("#key-button").addEventListener("click", () => openKeyDialog());
  events.addEventListener("auth", (e) => openKeyDialog(e.detail));
  events.addEventListener("offline", () => {
    banner("Cannot reach the Quarry service. Is it running? Checking again in the background…", "offline");
    markDown();
    clearTimeout(healthTimer);
    healthTimer = setTimeout(checkHealth, 4000);
  });
}

// ---- tabs ----------------------------------------------------------------------------

function show(name, focus = false) {
  for (const v of VIEWS) {
    const tab = $(`#tab-${v}`);
    const on = v === name;
    tab.setAttribute("aria-selected", on ? "true" : "false");
    tab.tabIndex = on ? 0 : -1;
    $(`#view-${v}`).hidden = !on;
    if (on && focus) tab.focus();
  }
  history.replaceState(null, "", `#${name}`);
  if (name === "collections") showCollections();
  if (name === "research") showResearch();
  if (name === "chat") redrawPlan();
  if (name === "chat" && !focus) $("#question").focus({ preventScroll: true });
}

function initTabs() {
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    tab.addEventListener("click", () => show(tab.dataset.view));
    tab.addEventListener("keydown", (e) => {
      const i = VIEWS.indexOf(tab.dataset.view);
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (step) show(VIEWS[(i + step + VIEWS.length) % VIEWS.length], true);
      if (e.key === "Home") show(VIEWS[0], true);
      if (e.key === "End") show(VIEWS[VIEWS.length - 1], true);
    });
  }
  document.addEventListener("keydown", (e) => {
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement?.tagName || "");
    if (e.key === "Escape" && !$("#key-dialog").open) {
      if (closeAnySource()) return;
      closeDetails();
    }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "/") {
      e.preventDefault();
      show("chat");
      $("#question").focus();
    }
  });
}

// ---- start ---------------------------------------------------------------------------

function init() {
  initKey();
  initTabs();
  initSources();
  initChat(current);
  initCollections({ current, select, onChange: fillPicker });
  initResearch(current);
  $("#collection-picker").addEventListener("change", () => select(current()));
  $("#banner-close").addEventListener("click", () => banner(""));
  document.addEventListener("quarry:error", (e) => banner(e.detail));
  const initial = location.hash.slice(1);
  show(VIEWS.includes(initial) ? initial : "chat");
  checkHealth();
  if (!getKey()) {
    fillPicker([], "enter an API key");
    openKeyDialog();
  } else start();
  window.addEventListener("focus", () => {
    if (getKey()) loadCollections().then(() => !$("#view-collections").hidden && loadDocuments()).catch(() => {});
  });
}

init();
