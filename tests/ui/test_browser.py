"""The web UI in a real browser (Debian's chromium) against the real service."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import ADMIN, Live
from tests.ui.conftest import ARTIFACTS, ApiOnly, api_settings, open_ui, shot

BASALT = """# Basalt

Basalt is a fine-grained volcanic rock formed from the rapid cooling of lava rich in magnesium and iron.
It makes up most of the ocean floor.

## Columns

The Giant's Causeway in Northern Ireland has about 40,000 interlocking basalt columns.
The columns formed 50 to 60 million years ago, when lava cooled and contracted.
"""
BROKEN_PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage \x00\x01\x02 not a real PDF"


def drop(page: Any, selector: str, files: list[tuple[str, bytes, str]]) -> None:
    """Drop files on an element, as dragging them from the desktop does."""
    payload = [(name, base64.b64encode(data).decode(), kind) for name, data, kind in files]
    transfer = page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const [name, b64, type] of files) {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                dt.items.add(new File([bytes], name, { type }));
            }
            return dt;
        }""",
        payload,
    )
    page.dispatch_event(selector, "dragenter", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


# What the page showed while an answer was streaming: the plan's node counts as they changed,
# whether a node was seen running, and the most answer text on screen.
WATCH_STREAM = """() => {
    window.__seen = { counts: [], running: false, textWhileStreaming: 0 };
    const look = () => {
        const bot = document.querySelector("li.msg.bot[data-status=streaming]");
        if (!bot) return;
        const seen = window.__seen;
        const count = document.querySelectorAll("#plan-graph [data-node]").length;
        if (count && seen.counts[seen.counts.length - 1] !== count) seen.counts.push(count);
        if (document.querySelector("#plan-graph [data-state=running]")) seen.running = true;
        const text = bot.querySelector(".answer").textContent.replace(/Planning…|Searching…/g, "").trim();
        seen.textWhileStreaming = Math.max(seen.textWhileStreaming, text.length);
    };
    new MutationObserver(look).observe(document.body, { subtree: true, childList: true, characterData: true,
        attributes: true });
}"""


@pytest.mark.slow
def test_a_user_builds_a_collection_asks_and_runs_research(page: Any, live: Live) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_ui(page, live)
    page.wait_for_selector("#health.ok >> text=ready")
    shot(page, "01-start")

    # a collection, two dropped files: the corrupt one shows its error, the other indexes
    page.focus("#tab-chat")
    page.keyboard.press("ArrowRight")  # tabs follow the keyboard
    assert page.evaluate("document.activeElement.id") == "tab-collections"
    assert page.is_visible("#view-collections") and page.is_hidden("#view-chat")
    page.fill("#new-collection", "geology")
    page.press("#new-collection", "Enter")
    page.wait_for_selector("#collection-list li.current >> text=geology")
    assert page.input_value("#collection-picker") == "geology"
    files = [("basalt.md", BASALT.encode(), "text/markdown"), ("broken.pdf", BROKEN_PDF, "application/pdf")]
    drop(page, "#dropzone", files)
    failed = page.wait_for_selector(".upload[data-file='broken.pdf'][data-phase=failed] .upload-error")
    assert "broken.pdf" in failed.inner_text() and "PDF" in failed.inner_text()
    page.wait_for_selector(".upload[data-file='basalt.md'][data-phase=done]", timeout=180_000)
    row = page.wait_for_selector("#document-table tr[data-source='basalt.md'][data-status=indexed]")
    assert "Basalt" in row.inner_text()
    assert page.locator("#document-table tr[data-source='broken.pdf']").count() == 0  # nothing stored for it
    shot(page, "02-collections-upload")

    # ask: the plan shows while the answer streams in; the answer cites its source
    page.click("#tab-chat")
    page.evaluate(WATCH_STREAM)
    page.fill("#question", "How many basalt columns does the Giant's Causeway have?")
    page.keyboard.press("Enter")
    bot = page.wait_for_selector("li.msg.bot[data-status=done]", timeout=180_000)
    seen = page.evaluate("window.__seen")
    assert max(seen["counts"], default=0) >= 1, seen  # the plan graph was on screen before the answer finished
    assert int(bot.get_attribute("data-tokens") or 0) > 1  # the answer arrived in pieces
    assert int(bot.get_attribute("data-plans") or 0) >= 1
    answer = page.inner_text("li.msg.bot .answer")
    assert "40,000" in answer
    assert page.locator("li.msg.bot .answer a.cite").count() >= 1
    shot(page, "03-chat-answer")

    # the citation opens the passage with the cited span highlighted
    page.locator("li.msg.bot .answer a.cite").first.click()
    span = page.wait_for_selector("#source-panel mark.span")
    cited = " ".join(span.inner_text().split())
    assert cited and cited in " ".join(BASALT.split())
    assert "basalt.md" in page.inner_text("#source-panel .doc-meta")
    shot(page, "04-citation")
    page.click("#source-panel .source-close")
    assert page.locator("#source-panel").is_hidden()
    assert "cite" in (page.evaluate("document.activeElement.className") or "")  # focus back on the citation
    page.keyboard.press("Enter")  # and it opens again from the keyboard
    page.wait_for_selector("#source-panel mark.span")

    # the plan graph: a done node, opened from the keyboard, shows question, queries, answer, evidence
    node = page.wait_for_selector("#plan-graph [data-node][data-state=done]")
    node.focus()
    page.keyboard.press("Enter")
    detail = page.wait_for_selector("#node-detail:not([hidden])")
    text = detail.inner_text().lower()  # headings are upper-cased by the style sheet
    assert "queries" in text and "answer" in text and re.search(r"evidence \([1-9]", text)
    assert page.locator("#node-detail .evidence li").count() >= 1
    shot(page, "05-plan-node")
    page.keyboard.press("Escape")  # closes the source first
    assert page.locator("#source-panel").is_hidden()

    # copy the answer
    page.click("li.msg.bot button.copy")
    assert page.evaluate("navigator.clipboard.readText()") == answer.strip()

    # the conversation stays on screen across a reload (session storage)
    page.reload()
    page.wait_for_selector("li.msg.bot[data-status=done]")
    assert "40,000" in page.inner_text("li.msg.bot .answer")

    # research: a topic job runs to the end; its report reads and downloads as markdown
    page.click("#tab-research")
    page.fill("#research-input", "basalt rock and its columns")
    page.fill("#research-sections", "2")
    page.click("#research-form button[type=submit]")
    page.wait_for_selector("#job-detail [role=progressbar]")
    page.wait_for_selector("#job-detail .status[data-status=succeeded]", timeout=240_000)
    assert page.locator("#job-detail .report-section").count() >= 1
    headings = page.locator("#job-detail .report-section h3").all_inner_texts()
    assert headings[0] == "1. Overview", headings  # a section's title heads it, not its question
    assert page.locator("#job-list .job[data-status=succeeded]").count() == 1
    with page.expect_download() as download:
        page.click("#download-report")
    markdown = Path(download.value.path()).read_text()
    assert markdown.startswith("# Research report: basalt rock and its columns")
    assert "## References" in markdown and f"## {headings[0]}" in markdown  # the same headings
    shot(page, "06-research-report")

    # a long job: progress and partial sections show while it runs; cancelled, it keeps them
    page.check("input[name=mode][value=questions]")
    questions = "\n".join(f"Question {i}: what does the text say about basalt columns and lava?" for i in range(50))
    page.fill("#research-input", questions)
    page.click("#research-form button[type=submit]")
    page.wait_for_selector("#job-detail .status[data-status=running]", timeout=60_000)
    page.wait_for_selector("#job-detail .report.partial .report-section", timeout=60_000)
    progress = page.inner_text("#job-detail .progress-text")
    assert re.fullmatch(r"\d+ of 50 sections", progress) and not progress.startswith("0 "), progress
    assert int(page.get_attribute("#job-detail [role=progressbar]", "aria-valuenow") or 0) > 0
    shot(page, "07-research-partial")
    page.click("#cancel-job")
    page.wait_for_selector("#job-detail .status[data-status=cancelled]", timeout=60_000)
    assert page.locator("#job-detail .report-section").count() >= 1
    shot(page, "08-research-cancelled")


def test_phone_width(browser: Any, live: Live) -> None:
    with live.client() as api:
        job = api.post(
            "/v1/collections/phone/documents/text", json={"documents": [{"name": "basalt.md", "text": BASALT}]}
        ).json()
        assert live.wait_job(api, job["id"])["status"] == "succeeded"
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, color_scheme="dark"
    )
    page = context.new_page()
    try:
        open_ui(page, live)
        page.select_option("#collection-picker", "phone")
        page.fill("#question", "What is basalt made of?")
        page.click("#ask-button")
        page.wait_for_selector("li.msg.bot[data-status=done]", timeout=180_000)
        picker = page.locator("#collection-picker").bounding_box()
        assert picker and picker["width"] > 150  # the collection picker keeps a usable width
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width}px wide at a 390px screen"
        shot(page, "09-phone-chat")
        page.locator("li.msg.bot .answer a.cite").first.tap()
        panel = page.wait_for_selector("#source-panel mark.span")
        box = page.locator("#source-panel").bounding_box()
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= 844 + 1  # a sheet on screen
        assert panel.is_visible()
        shot(page, "10-phone-citation", full_page=False)
        page.click("#tab-collections")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot(page, "11-phone-collections")
    finally:
        context.close()


def test_documents_and_collections_are_deleted_from_the_ui(page: Any, live: Live, tmp_path: Path) -> None:
    page.on("dialog", lambda dialog: dialog.accept())
    open_ui(page, live, view="collections")
    page.fill("#new-collection", "scratch")
    page.click("#create-collection button")
    page.wait_for_selector("#collection-list li.current >> text=scratch")
    notes = tmp_path / "notes.txt"
    notes.write_text("Obsidian is volcanic glass formed when lava cools too fast for crystals to grow.\n")
    page.set_input_files("#file-input", str(notes))  # the picker
    page.wait_for_selector("#document-table tr[data-source='notes.txt'][data-status=indexed]", timeout=180_000)
    page.click("#document-table tr[data-source='notes.txt'] button")
    page.wait_for_selector("#document-table >> text=No documents yet")
    with live.client() as api:
        assert api.get("/v1/collections/scratch/documents").json() == []
    page.click("#collection-list button[aria-label='Delete collection scratch']")
    page.wait_for_selector("#collection-list >> text=scratch", state="detached")
    assert "scratch" not in page.locator("#collection-picker option").all_inner_texts()
    with live.client() as api:
        assert api.get("/v1/collections/scratch").status_code == 404


def test_a_read_only_key_is_offered_no_write_controls(page: Any, live: Live) -> None:
    with live.client() as api:
        key = api.post("/v1/keys", json={"name": "reader", "tenant": "default", "rights": "read"}).json()["token"]
        job = api.post(
            "/v1/collections/readable/documents/text", json={"documents": [{"name": "basalt.md", "text": BASALT}]}
        ).json()
        assert live.wait_job(api, job["id"])["status"] == "succeeded"
    open_ui(page, live, key=key, view="collections")
    page.wait_for_selector("#collection-list li button.pick")
    assert page.is_visible(".read-only-note")
    for control in ("#create-collection", "#dropzone", "#collection-list .danger"):
        assert page.locator(control).first.is_hidden(), control
    shot(page, "17-read-only-key")
    page.select_option("#collection-picker", "readable")
    page.click("#tab-chat")  # and it still asks
    page.fill("#question", "What is basalt?")
    page.keyboard.press("Enter")
    page.wait_for_selector("li.msg.bot[data-status=done]", timeout=120_000)


def test_a_refused_key_and_an_unreachable_service_get_clear_errors(browser: Any, tmp_path: Path) -> None:
    import httpx

    # a service of its own, stopped halfway through the test
    service = ApiOnly(api_settings(tmp_path))
    httpx.post(f"{service.url}/v1/collections", json={"name": "notes"}, headers={"Authorization": f"Bearer {ADMIN}"})
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    try:
        response = page.goto(service.url + "/")
        assert response and "script-src 'self'" in response.headers["content-security-policy"]
        page.click("#key-cancel")  # no key yet: asking says so and opens the key dialog
        page.fill("#question", "Anything?")
        page.keyboard.press("Enter")
        assert "Enter an API key first" in page.inner_text("li.msg.bot .error")
        page.wait_for_selector("#key-dialog[open]")
        page.fill("#key-input", "qk_not_a_real_key")
        page.press("#key-input", "Enter")
        error = page.wait_for_selector("#key-dialog[open] #key-error:not([hidden])")
        assert "refused" in error.inner_text() and "invalid or revoked" in error.inner_text()
        shot(page, "12-key-refused")
        page.fill("#key-input", ADMIN)
        page.press("#key-input", "Enter")
        page.wait_for_selector("#key-dialog", state="hidden")
        assert page.evaluate("sessionStorage.getItem('quarry.key')") == ADMIN

        service.stop()
        page.fill("#question", "Is anyone there?")
        page.keyboard.press("Enter")
        failed = page.locator("li.msg.bot[data-status=error] .error").nth(1)
        failed.wait_for()
        assert "Cannot reach the Quarry service" in failed.inner_text()
        assert "Cannot reach" in page.inner_text("#banner")
        page.wait_for_selector("#health.down >> text=unreachable")
        shot(page, "13-unreachable")
    finally:
        service.stop()
        context.close()


LANDMARKS = {
    "Eiffel Tower": "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was completed in 1889.",
    "Big Ben": "Big Ben is the nickname of the Great Bell of the clock at Westminster. It was completed in 1859.",
}


def test_with_a_model_the_plan_grows_live_and_the_answer_streams(browser: Any, tmp_path: Path) -> None:
    """A planning model behind a real OpenAI-compatible endpoint (scripted, as an external model
    may be in tests): the planner adds a node after the first ones finish, nodes run for a while,
    and the writer's answer streams in pieces."""
    from quarry.retrieval.library import Library
    from quarry.retrieval.loaders import text_document
    from tests.agents.scripted import ScriptedModel
    from tests.agents.scripted_openai import ScriptedOpenAI

    plan = {
        "ops": [
            {"op": "add_node", "id": "a", "question": "When was the Eiffel Tower completed?", "parents": []},
            {"op": "add_node", "id": "b", "question": "When was Big Ben completed?", "parents": []},
            {"op": "add_node", "id": "c", "question": "Which was completed first?", "parents": ["a", "b"]},
        ]
    }
    extensions = iter([[{"op": "add_node", "id": "d", "question": "How many years apart?", "parents": ["c"]}]])
    model = ScriptedModel(
        plan,
        {
            "When was the Eiffel Tower completed?": "1889",
            "When was Big Ben completed?": "1859",
            "Which was completed first?": "Big Ben",
            "How many years apart?": "30 years",
        },
        writer="Big Ben was completed first, in 1859 [2], thirty years before the Eiffel Tower in 1889 [1].",
        extend=lambda _user: {"ops": next(extensions, [{"op": "finish"}])},
        delays={
            "When was the Eiffel Tower completed?": 1.0,
            "When was Big Ben completed?": 1.6,
            "Which was completed first?": 0.8,
            "How many years apart?": 0.8,
        },
    )
    endpoint = ScriptedOpenAI(model)
    endpoint.start()
    llm = {"backend": "openai", "model": "scripted", "base_url": endpoint.base_url, "max_retries": 0}
    settings = api_settings(tmp_path, llm=llm)
    library = Library(settings)
    library.ingest_documents("landmarks", [text_document(t, name=f"{k}.md", title=k) for k, t in LANDMARKS.items()])
    library.close()
    service = ApiOnly(settings)
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    try:
        page.goto(service.url + "/#key=" + ADMIN)  # the link `make run` prints
        page.wait_for_selector("#collection-picker option[value=landmarks]", state="attached")
        page.evaluate(WATCH_STREAM)
        page.fill("#question", "Which was completed first, the Eiffel Tower or Big Ben?")
        page.keyboard.press("Enter")
        page.wait_for_selector("#plan-graph [data-state=running]")
        shot(page, "15-plan-running")
        page.wait_for_selector("li.msg.bot[data-status=done]", timeout=60_000)
        seen = page.evaluate("window.__seen")
        counts = seen["counts"]
        assert 3 in counts and counts[-1] == 4 and counts.index(3) < counts.index(4), counts  # the graph grew
        assert seen["running"] and seen["textWhileStreaming"] > 0, seen
        states = page.eval_on_selector_all("#plan-graph [data-node]", "els => els.map(e => e.dataset.state)")
        assert states == ["done"] * 4
        edges = page.eval_on_selector_all("#plan-graph path.edge", "els => els.map(e => e.dataset.edge).sort()")
        assert edges == ["a->c", "b->c", "c->d"]
        # three layers do not fit the side panel across, so they run top to bottom, all in view
        assert page.get_attribute("#plan-graph svg", "data-orientation") == "down"
        box = page.locator("#plan-graph").bounding_box()
        for node in page.locator("#plan-graph [data-node] rect").all():
            r = node.bounding_box()
            assert box and r and box["x"] <= r["x"] and r["x"] + r["width"] <= box["x"] + box["width"]
        answer = page.inner_text("li.msg.bot .answer")
        assert answer.startswith("Big Ben was completed first")
        assert page.locator("li.msg.bot .answer a.cite").count() == 2
        assert "Extractive" not in answer
        page.click("#plan-graph [data-node=d]")
        assert "30 years" in page.inner_text("#node-detail")
        page.locator("li.msg.bot .answer a.cite").first.click()
        assert "1859" in page.inner_text("#source-panel mark.passage, #source-panel mark.span")
        shot(page, "16-plan-grown")
    finally:
        context.close()
        service.stop()
        endpoint.stop()


def test_the_plan_graph_stays_readable_from_1_to_30_nodes(page: Any, live: Live) -> None:
    page.goto(live.url + "/")
    page.keyboard.press("Escape")  # no key needed to draw a graph
    for count in (1, 30):
        layout = page.evaluate(
            """async (count) => {
                const { renderGraph } = await import("/ui/js/graph.js");
                const states = ["done", "running", "waiting", "not_found", "failed"];
                const nodes = [{ id: "n1", question: "What are the main kinds of volcanic rock and how do they form?",
                                 parents: [], state: "done" }];
                for (let i = 2; i <= count; i++) {
                    const parent = i <= 9 ? "n1" : `n${2 + ((i - 10) % 8)}`;
                    const parents = i === count && count > 2 ? ["n2", "n3", "n4", "n5"] : [parent];
                    const wide = i % 3 === 0; // capitals and long words are wider than average text
                    nodes.push({ id: `n${i}`, parents, state: states[i % states.length],
                                 question: wide ? `WHICH MUSEUMS HOLD WORKS BY MICHELANGELO ${i} AND WHO OWNS THEM?`
                                     : `Sub-question ${i}: which basalt samples from site ${i} were dated?` });
                }
                const edges = nodes.flatMap((n) => n.parents.map((p) => [p, n.id]));
                // a box like the plan's, beside it, so the page's own redraws leave it alone
                document.querySelector("#graph-probe")?.remove();
                const box = document.createElement("div");
                box.id = "graph-probe";
                box.className = "graph";
                document.querySelector("#plan-graph").after(box);
                renderGraph(box, { nodes, edges }, { selected: null, onSelect: () => {} });
                const rects = [...box.querySelectorAll("[data-node] rect")].map((r) => r.getBoundingClientRect());
                const fonts = [...box.querySelectorAll("[data-node] text")]
                    .map((t) => parseFloat(getComputedStyle(t).fontSize));
                return {
                    nodes: box.querySelectorAll("[data-node]").length,
                    edges: box.querySelectorAll("path.edge").length,
                    expectedEdges: edges.length,
                    rects: rects.map((r) => [r.x, r.y, r.width, r.height]),
                    minFont: Math.min(...fonts),
                    labels: [...box.querySelectorAll("[data-node] text.q")].map((t) => t.textContent),
                    overflowing: [...box.querySelectorAll("[data-node]")].filter((g) => {
                        const text = g.querySelector("text.q").getBBox();
                        return text.x + text.width > g.querySelector("rect").getBBox().width - 4;
                    }).length,
                };
            }""",
            count,
        )
        assert layout["nodes"] == count and layout["edges"] == layout["expectedEdges"]
        assert layout["minFont"] >= 11  # drawn at natural size (the box scrolls), never shrunk to fit
        assert all(label.strip() for label in layout["labels"])
        assert layout["overflowing"] == 0  # questions wrap to the node's width, however wide their letters
        rects = layout["rects"]
        for i, a in enumerate(rects):
            assert a[2] >= 150 and a[3] >= 40
            for b in rects[i + 1 :]:
                apart = a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]
                assert apart, f"nodes overlap: {a} {b}"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator("#graph-probe").screenshot(path=str(ARTIFACTS / f"14-graph-{count}-nodes.png"))  # as it opens
        page.evaluate(
            """() => { for (const el of [document.querySelector('#graph-probe'), document.querySelector('#side')]) {
                el.style.maxHeight = 'none'; el.style.overflow = 'visible'; } }"""
        )
        page.locator("#graph-probe svg").screenshot(path=str(ARTIFACTS / f"14-graph-{count}-nodes-whole.png"))


# Markdown as documents and answers may hold it, hostile parts included.
HOSTILE_MARKDOWN = """# Title

Basalt is **dark** and `fine-grained` [1].

<img src=x onerror="window.__xss = 1"> <script>window.__xss = 2</script>
<iframe src="https://example.org"></iframe>

[a script link](javascript:window.__xss=3) [a page](https://example.org/basalt) [a file](../etc/passwd)
<a href="javascript:window.__xss=4" onclick="window.__xss=5">raw link</a>

![an image](https://example.org/x.png)

```
code keeps [2] and <b>tags</b> as text
```
"""


def test_markdown_renders_safely(page: Any, live: Live) -> None:
    """Answers and passages show their markdown formatted, through the sanitiser: no
    script, handler, frame or image gets in, links keep only web targets, raw HTML shows
    as text; citations inside code stay text; the passage and span marks survive rendering."""
    page.goto(live.url + "/")
    page.keyboard.press("Escape")
    result = page.evaluate(
        """async (text) => {
            const { renderCited, renderHighlighted } = await import("/ui/js/markdown.js");
            window.__xss = 0;
            const box = document.createElement("div");
            box.id = "md-probe";
            document.body.append(box);
            const opened = [];
            const citations = [{ n: 1, title: "Basalt", document: "basalt.md" }, { n: 2, title: "x", document: "x" }];
            box.append(renderCited(text, citations, (c) => opened.push(c.n), "probe"));
            box.querySelector("a.cite").click();
            const doc = "# Basalt\\n\\nBasalt is **dark** rock.\\n\\n## Columns\\n\\nIt forms columns.";
            const start = doc.indexOf("## Columns");
            const span = doc.indexOf("It forms");
            const quote = document.createElement("div");
            quote.append(renderHighlighted(doc, [start, doc.length], [span, doc.length]));
            await new Promise((r) => setTimeout(r, 200));
            const attrs = [...box.querySelectorAll("*")].flatMap((el) => [...el.attributes].map((a) => a.name));
            return {
                xss: window.__xss,
                opened,
                dangerous: box.querySelectorAll("script, img, iframe, object, embed, style").length,
                handlers: attrs.filter((a) => a.startsWith("on")),
                hrefs: [...box.querySelectorAll("a[href]")].map((a) => a.getAttribute("href")),
                targets: [...box.querySelectorAll("a[href]:not(.cite)")].map((a) => a.rel),
                heading: box.querySelector("h1")?.textContent,
                strong: box.querySelector("strong")?.textContent,
                code: box.querySelector("pre code")?.textContent,
                cites: [...box.querySelectorAll("a.cite")].map((a) => a.textContent),
                text: box.textContent,
                headings: [...quote.querySelectorAll("h1, h2")].map((h) => h.textContent),
                passage: [...quote.querySelectorAll("mark.passage, mark.span")].map((m) => m.textContent).join(""),
                span: [...quote.querySelectorAll("mark.span")].map((m) => m.textContent).join(""),
                bold: quote.querySelector("strong")?.textContent,
            };
        }""",
        HOSTILE_MARKDOWN,
    )
    assert result["xss"] == 0 and result["dangerous"] == 0 and result["handlers"] == [], result
    assert [h for h in result["hrefs"] if h != "#"] == ["https://example.org/basalt"], result
    assert all("noopener" in rel for rel in result["targets"]), result
    assert result["heading"] == "Title" and result["strong"] == "dark"
    assert "[2]" in result["code"] and "<b>tags</b>" in result["code"]  # code is text
    assert result["cites"] == ["1"] and result["opened"] == [1]
    assert '<img src=x onerror="window.__xss = 1">' in result["text"]  # raw HTML shows as text
    assert result["headings"] == ["Basalt", "Columns"]  # the marks did not break the headings
    assert result["passage"].split() == ["Columns", "It", "forms", "columns."], result
    assert result["span"] == "It forms columns."
    assert result["bold"] == "dark"
