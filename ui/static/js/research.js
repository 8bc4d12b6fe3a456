// Research jobs: submit a topic or questions, follow progress and the report so far,
// cancel, read the finished report (citations open their passages) and download it.

import { api, download, enc, text } from "./api.js";
import { $, announce, clear, copy, flash, h, keepFocus, plural, progressBar, when } from "./dom.js";
import { renderCited } from "./markdown.js";
import { openSource } from "./passage.js";

const FINISHED = ["succeeded", "failed", "cancelled"];

const view = {
  collection: () => "",
  jobs: [],
  selected: null, // job id
  detail: null, // {job, report}
  timer: null,
  listTimer: null,
  ticket: 0, // the latest poll wins
  shown: "", // what the detail shows, to skip identical re-renders
};

function mode() {
  return document.querySelector('input[name="mode"]:checked').value;
}

function syncMode() {
  const topic = mode() === "topic";
  $("#research-input-label").textContent = topic ? "Topic" : "Questions, one per line (at most 50)";
  $("#research-input").maxLength = topic ? 1000 : 50 * 1000;
  $("#research-input").placeholder = topic
    ? "e.g. How Quarry stores and searches documents"
    : "What does the planner do?\nHow are citations checked?";
  $("#sections-field").hidden = !topic;
}

async function submit(e) {
  e.preventDefault();
  const collection = view.collection();
  if (!collection) return flash("Pick a collection first.");
  const value = $("#research-input").value.trim();
  const body = { collection };
  if (mode() === "topic") {
    body.topic = value;
    body.sections = Number($("#research-sections").value) || 4;
  } else {
    body.questions = value.split("\n").map((q) => q.trim()).filter(Boolean);
  }
  try {
    const job = await api("POST", "/v1/research", body);
    $("#research-input").value = "";
    await loadJobs();
    select(job.id);
  } catch (err) {
    flash(err.message);
  }
}

// ---- the job list --------------------------------------------------------------------

export async function loadJobs() {
  try {
    view.jobs = await api("GET", "/v1/jobs?kind=research");
  } catch (err) {
    clear($("#job-list"), h("li", { class: "error" }, err.message));
    return;
  }
  view.jobs.sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
  renderJobs();
  clearTimeout(view.listTimer);
  if (view.jobs.some((j) => !FINISHED.includes(j.status)) && !$("#view-research").hidden) {
    view.listTimer = setTimeout(loadJobs, 3000);
  }
}

function renderJobs() {
  const list = $("#job-list");
  if (!view.jobs.length) {
    clear(list, h("li", { class: "muted" }, "No research jobs yet."));
    return;
  }
  keepFocus(list, () => clear(list, view.jobs.map((j) => h("li", {},
    h("button", { type: "button", class: `job ${j.id === view.selected ? "current" : ""}`,
      "aria-current": j.id === view.selected ? "true" : "false", dataset: { job: j.id, status: j.status, key: j.id },
      onclick: () => select(j.id) },
    h("span", { class: "job-label" }, j.label || j.id),
    h("span", { class: "muted" }, ` ${j.collection} · `, h("span", { class: `status ${j.status}` }, j.status),
      j.status === "running" ? ` ${Math.round(j.progress * 100)}%` : "", ` · ${when(j.created_at)}`))))));
}

// ---- one job -------------------------------------------------------------------------

async function select(id) {
  view.selected = id;
  view.detail = null;
  view.shown = "";
  renderJobs();
  clear($("#job-detail"), h("p", { class: "muted" }, "Loading…"));
  await poll(true);
  const detail = $("#job-detail");
  detail.focus({ preventScroll: true });
  detail.scrollIntoView({ block: "nearest" }); // on a phone the report sits below the form
}

async function poll(first = false) {
  clearTimeout(view.timer);
  const id = view.selected;
  const ticket = ++view.ticket;
  if (!id) return;
  let job;
  let report;
  try {
    job = await api("GET", `/v1/research/${enc(id)}`);
    if (job.status === "succeeded") report = await api("GET", `/v1/research/${enc(id)}/result`);
  } catch (err) {
    if (ticket === view.ticket) {
      view.shown = "";
      clear($("#job-detail"), h("p", { class: "error", role: "alert" }, err.message));
    }
    return;
  }
  if (ticket !== view.ticket) return; // a newer poll (or another job) took over
  const was = view.detail?.job.status;
  view.detail = { job, report: report || job.partial };
  const shown = JSON.stringify([job.status, job.done, job.total, job.error, view.detail.report?.sections?.length]);
  if (shown !== view.shown) {
    view.shown = shown;
    keepFocus($("#job-detail"), renderDetail);
  }
  if (was && was !== job.status && FINISHED.includes(job.status)) announce(`The research job ${job.status}.`);
  const listed = view.jobs.findIndex((j) => j.id === job.id);
  if (listed >= 0) {
    view.jobs[listed] = job;
    renderJobs();
  }
  if (!first && was && was !== job.status) loadJobs();
  if (!FINISHED.includes(job.status) && !$("#view-research").hidden) view.timer = setTimeout(poll, 1000);
}

function renderReport(collection, report) {
  if (!report?.sections?.length) return [h("p", { class: "muted" }, "No sections yet.")];
  const refs = report.references || [];
  const open = (c) => openSource(collection, c, $("#research-source"));
  return [
    ...report.sections.map((s, i) => h("section", { class: "report-section" },
      h("h3", {}, `${i + 1}. ${s.title || s.question}`),
      h("div", { class: "md" }, renderCited(s.answer, refs, open, `cite-${i}`)),
      ...(s.notes || []).map((n) => h("p", { class: "note" }, n)))),
    refs.length ? h("h3", {}, "References") : null,
    refs.length ? h("ol", { class: "references" }, refs.map((r) => h("li", { value: r.n },
      h("a", { href: "#", dataset: { key: `ref-${r.n}` }, onclick: (e) => { e.preventDefault(); open(r); } },
        r.title || r.document),
      h("span", { class: "muted" }, ` (${r.document}) — ${r.snippet.slice(0, 160)}${r.snippet.length > 160 ? "…" : ""}`))))
      : null,
  ];
}

function renderDetail() {
  const { job, report } = view.detail;
  const running = !FINISHED.includes(job.status);
  const box = $("#job-detail");
  const progress = job.total ? `${job.done} of ${plural(job.total, "section")}` : "planning sections…";
  clear(box,
    h("div", { class: "panel-head" }, h("h2", {}, job.label || "Research report"),
      h("span", { class: `status ${job.status}`, role: "status", dataset: { status: job.status } }, job.status)),
    h("p", { class: "muted" }, `${job.collection} · started ${when(job.created_at)}`),
    running || job.status === "succeeded" ? progressBar(job.status === "succeeded" ? 1 : job.progress, "research progress") : null,
    h("p", { class: "muted progress-text" }, job.status === "succeeded" ? "finished" : progress),
    job.error && job.status !== "cancelled" ? h("p", { class: "error", role: "alert" }, job.error) : null,
    h("div", { class: "actions" },
      running ? h("button", { type: "button", class: "danger", id: "cancel-job", dataset: { key: "cancel" },
        onclick: () => cancel(job.id) }, "Cancel") : null,
      job.status === "succeeded" ? h("button", { type: "button", id: "download-report", dataset: { key: "download" },
        onclick: () => save(job) }, "Download markdown") : null,
      report?.sections?.length ? h("button", { type: "button", class: "ghost", dataset: { key: "copy" }, onclick: async (e) => {
        e.target.textContent = (await copy(report.markdown)) ? "Copied" : "Copy failed";
      } }, "Copy markdown") : null),
    h("div", { class: `report${running ? " partial" : ""}`, "aria-busy": running ? "true" : "false" },
      running && report?.sections?.length ? h("p", { class: "note" }, "Partial report: sections appear as they finish.") : null,
      ...renderReport(job.collection, report)));
}

async function cancel(id) {
  try {
    await api("POST", `/v1/research/${enc(id)}/cancel`);
  } catch (err) {
    flash(err.message);
  }
  await poll();
  loadJobs();
}

async function save(job) {
  try {
    const markdown = await text(`/v1/research/${enc(job.id)}/result?format=markdown`);
    const name = (job.label || "report").toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 60);
    download(`quarry-${name || "report"}-${job.id.slice(0, 8)}.md`, markdown);
  } catch (err) {
    flash(err.message);
  }
}

export function initResearch(currentCollection) {
  view.collection = currentCollection;
  for (const radio of document.querySelectorAll('input[name="mode"]')) radio.addEventListener("change", syncMode);
  syncMode();
  $("#research-form").addEventListener("submit", submit);
}

export function showResearch() {
  loadJobs();
  if (view.selected) poll();
}
