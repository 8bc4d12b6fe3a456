// Markdown from the service (answers, passages of documents) shown as formatted text,
// safely: marked (v18.2.1, MIT, vendored as marked.js) parses it with raw HTML escaped
// rather than passed through, DOMPurify (v3.5.0, Apache-2.0/MPL-2.0, vendored as purify.js)
// cleans marked's output against an allow-list, and the result enters the page as nodes.
// Links keep only http(s) and mailto targets and open outside the page; images show
// their alt text (the page's policy loads no outside images).

import { cited } from "./dom.js";
import { Marked } from "./marked.js";
import DOMPurify from "./purify.js";

const ALLOWED_TAGS = [
  "p", "br", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol", "li", "a", "hr",
  "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
];
const ALLOWED_ATTR = ["href", "title", "start", "align"];
const SAFE_LINK = /^(https?:|mailto:)/i;

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);

const parser = new Marked({ gfm: true, breaks: true, async: false });
parser.use({
  renderer: {
    html: (token) => escapeHtml(token.raw ?? token.text ?? ""), // raw HTML in a document is text
    image: (token) => escapeHtml(token.text || ""),
  },
});

// Markers (characters of Unicode's private use area) that `renderHighlighted` places in the
// text before rendering, to find the passage and the cited span again in the rendered nodes.
const P_START = "\uE000";
const P_END = "\uE001";
const S_START = "\uE002";
const S_END = "\uE003";
const MARKERS = /[\uE000-\uE003]/g;

const purifier = DOMPurify(window);
purifier.addHook("uponSanitizeAttribute", (_node, data) => {
  data.attrValue = data.attrValue.replace(MARKERS, "");
});
purifier.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName !== "A") return;
  const href = node.getAttribute("href") || "";
  if (!SAFE_LINK.test(href)) {
    node.removeAttribute("href");
    return;
  }
  node.setAttribute("rel", "noopener noreferrer nofollow");
  node.setAttribute("target", "_blank");
});

// `text` (markdown) as a DocumentFragment of sanitised nodes.
export function renderMarkdown(text) {
  const html = parser.parse(String(text ?? ""));
  return purifier.sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR: [...ALLOWED_ATTR, "rel", "target"],
    ALLOW_DATA_ATTR: false,
    RETURN_DOM_FRAGMENT: true,
  });
}

// The text nodes under `root` in document order, except those inside the given tags.
function textNodes(root, skip = []) {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) => (skip.some((tag) => node.parentElement?.closest(tag)) ? NodeFilter.FILTER_REJECT
      : NodeFilter.FILTER_ACCEPT),
  });
  const nodes = [];
  while (walker.nextNode()) nodes.push(walker.currentNode);
  return nodes;
}

// Replace each text node under `root` that `split(text)` turns into several pieces (strings
// or nodes) with those pieces.
export function replaceText(root, split, skip = []) {
  for (const node of textNodes(root, skip)) {
    const pieces = split(node.data);
    if (pieces === null) continue;
    node.replaceWith(...pieces.map((p) => (p instanceof Node ? p : document.createTextNode(p))));
  }
  return root;
}

// block syntax a marker must not stand in front of (it would stop being a heading, a list…)
const isEnd = (mark) => mark === P_END || mark === S_END;
const BLOCK_START = /^(?:#{1,6}[ \t]+|[-*+][ \t]+|>[ \t]?|\d+[.)][ \t]+|\|[ \t]*|(?:`{3,}|~{3,})[^\n]*\n)/;

// `text` rendered as markdown with [passage] and [span] ranges (offsets into `text`)
// wrapped in <mark class="passage"> and <mark class="span">; the rest is in
// <span class="context">. `span` may equal `passage`.
export function renderHighlighted(text, passage, span) {
  const clean = text.replace(MARKERS, "");
  const cuts = [
    [passage[0], P_START], [passage[1], P_END], [span[0], S_START], [span[1], S_END],
  ].map(([at, mark]) => {
    let pos = Math.max(0, Math.min(clean.length, at));
    const lineStart = pos === 0 || clean[pos - 1] === "\n";
    if (isEnd(mark)) {
      while (lineStart && pos > 0 && clean[pos - 1] === "\n") pos--; // to the end of the line before
    } else {
      const block = lineStart ? clean.slice(pos).match(BLOCK_START) : null;
      if (block) pos += block[0].length; // after the heading's "## ", the list's "- "
    }
    return [pos, mark];
  });
  // inserted from the end; at one position, a start ends up before an end (an empty range stays empty)
  cuts.sort((a, b) => b[0] - a[0] || (isEnd(a[1]) ? -1 : 1));
  let marked = clean;
  for (const [pos, mark] of cuts) marked = marked.slice(0, pos) + mark + marked.slice(pos);
  const fragment = renderMarkdown(marked);
  let inPassage = false;
  let inSpan = false;
  return replaceText(fragment, (data) => {
    const pieces = [];
    for (const part of data.split(/([\uE000-\uE003])/)) {
      if (part === P_START) inPassage = true;
      else if (part === P_END) inPassage = false;
      else if (part === S_START) inSpan = true;
      else if (part === S_END) inSpan = false;
      else if (part) {
        const el = document.createElement(inSpan ? "mark" : inPassage ? "mark" : "span");
        el.className = inSpan ? "span" : inPassage ? "passage" : "context";
        if (inSpan) el.title = "the cited span";
        el.textContent = part;
        pieces.push(el);
      }
    }
    return pieces;
  });
}

// An answer's markdown with each [n] turned into a link to its citation (see dom.js `cited`);
// markers inside code or links stay text. `key` prefixes the links' data-key (see keepFocus).
export function renderCited(text, citations, onCite, key = "cite") {
  let node = 0;
  return replaceText(renderMarkdown(text), (data) => {
    if (!/\[\d/.test(data)) return null;
    node += 1;
    return cited(data, citations, onCite, `${key}-${node}`);
  }, ["code", "pre", "a"]);
}
