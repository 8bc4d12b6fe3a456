// The plan graph as SVG: layers by depth (longest path from a root), nodes ordered in a
// layer by their parents' places to keep edges short, state as colour plus a word (so it
// does not depend on colour alone). Layers run left to right, or top to bottom where that
// fits the box and left to right does not (a deep, narrow plan in a narrow panel). Natural
// size inside a scrolling box, so 30 nodes stay readable; each node is a focusable button.

const NS = "http://www.w3.org/2000/svg";
const W = 210; // node width
const H = 60; // node height
const GX = 54; // gap between layers, left to right
const GY = 14; // gap between nodes of a layer
const GV = 34; // gap between layers, top to bottom
const PAD = 10;
const FONT = 12; // px, the node question's font size (app.css)
const CENTRE_UP_TO = 6; // rows in the tallest column up to which columns are centred

export const STATE_LABEL = {
  waiting: "waiting",
  running: "running",
  done: "done",
  not_found: "not found",
  failed: "failed",
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

let ruler = null; // a canvas context, to measure text as the page's font draws it

function width(text, font) {
  ruler ||= document.createElement("canvas").getContext("2d");
  ruler.font = font;
  return ruler.measureText(text).width;
}

// The question in at most `lines` lines that fit a node, the last one cut with "…".
function wrap(text, font, lines = 2) {
  const room = W - 18;
  const fits = (s) => width(s, font) <= room;
  const cut = (s) => {
    let t = s;
    while (t && !fits(`${t}…`)) t = t.slice(0, -1);
    return `${t.trimEnd()}…`;
  };
  const words = text.split(/\s+/).filter(Boolean);
  const out = [""];
  let i = 0;
  for (; i < words.length; i++) {
    const word = fits(words[i]) ? words[i] : cut(words[i]);
    const line = out[out.length - 1];
    const next = line ? `${line} ${word}` : word;
    if (fits(next)) out[out.length - 1] = next;
    else if (out.length === lines) break;
    else out.push(word);
  }
  if (i < words.length) out[lines - 1] = cut(out[lines - 1]);
  return out;
}

// Layer of each node: 0 for roots, else one more than its deepest parent. `vertical`: layers
// are rows (top to bottom) instead of columns.
export function layout(nodes, edges, vertical = false) {
  const ids = new Set(nodes.map((n) => n.id));
  const parents = new Map(nodes.map((n) => [n.id, new Set((n.parents || []).filter((p) => ids.has(p)))]));
  for (const [a, b] of edges || []) if (ids.has(a) && ids.has(b)) parents.get(b).add(a);
  const column = new Map();
  const visiting = new Set();
  const depth = (id) => {
    if (column.has(id)) return column.get(id);
    if (visiting.has(id)) return 0; // a cycle never comes from the service; stay safe anyway
    visiting.add(id);
    let d = 0;
    for (const p of parents.get(id)) d = Math.max(d, depth(p) + 1);
    visiting.delete(id);
    column.set(id, d);
    return d;
  };
  nodes.forEach((n) => depth(n.id));
  const columns = [];
  for (const n of nodes) (columns[column.get(n.id)] ||= []).push(n.id);
  const row = new Map();
  columns.forEach((ids_, c) => {
    if (c > 0) {
      const centre = (id) => {
        const ps = [...parents.get(id)].map((p) => row.get(p));
        return ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : 0;
      };
      ids_.sort((a, b) => centre(a) - centre(b));
    }
    ids_.forEach((id, r) => row.set(id, r));
  });
  const tallest = Math.max(...columns.map((c) => c.length));
  const pos = new Map();
  if (vertical) {
    columns.forEach((ids_, c) => {
      const offset = ((tallest - ids_.length) * (W + GY)) / 2;
      ids_.forEach((id, r) => pos.set(id, { x: PAD + offset + r * (W + GY), y: PAD + c * (H + GV) }));
    });
    return {
      pos, parents, vertical,
      width: PAD * 2 + tallest * W + (tallest - 1) * GY,
      height: PAD * 2 + columns.length * H + (columns.length - 1) * GV,
    };
  }
  // short graphs are centred column by column; tall ones start at the top, where the box opens
  const centre = tallest <= CENTRE_UP_TO;
  columns.forEach((ids_, c) => {
    const offset = centre ? ((tallest - ids_.length) * (H + GY)) / 2 : 0;
    ids_.forEach((id, r) => pos.set(id, { x: PAD + c * (W + GX), y: PAD + offset + r * (H + GY) }));
  });
  return {
    pos, parents, vertical,
    width: PAD * 2 + columns.length * W + (columns.length - 1) * GX,
    height: PAD * 2 + tallest * H + (tallest - 1) * GY,
  };
}

// Left to right unless only top to bottom fits the box's width.
function fitted(nodes, edges, available) {
  const across = layout(nodes, edges);
  if (!available || across.width <= available) return across;
  const down = layout(nodes, edges, true);
  return down.width <= available || down.width < across.width ? down : across;
}

function edgePath(a, b, vertical) {
  if (vertical) {
    const [x1, y1, x2, y2] = [a.x + W / 2, a.y + H, b.x + W / 2, b.y - 2];
    return `M${x1},${y1} C${x1},${y1 + GV / 2} ${x2},${y2 - GV / 2} ${x2},${y2}`;
  }
  const [x1, y1, x2, y2] = [a.x + W, a.y + H / 2, b.x - 2, b.y + H / 2];
  return `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}`;
}

export function renderGraph(container, plan, { selected, onSelect }) {
  const nodes = plan.nodes || [];
  if (!nodes.length) {
    container.replaceChildren();
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = plan.pending ? "Planning…" : "No plan yet.";
    container.append(p);
    return;
  }
  const focused = document.activeElement?.closest?.("[data-node]")?.dataset.node;
  const font = `${FONT}px ${getComputedStyle(container).fontFamily}`;
  const { pos, parents, width, height, vertical } = fitted(nodes, plan.edges, container.clientWidth - 8);
  const svg = el("svg", {
    width, height, viewBox: `0 0 ${width} ${height}`, role: "group", "aria-label": `Plan with ${nodes.length} nodes`,
    "data-orientation": vertical ? "down" : "across",
  });
  const defs = el("defs");
  const marker = el("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto",
  });
  marker.append(el("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }));
  defs.append(marker);
  svg.append(defs);
  for (const n of nodes) {
    for (const p of parents.get(n.id)) {
      svg.append(el("path", {
        class: "edge", d: edgePath(pos.get(p), pos.get(n.id), vertical),
        "marker-end": "url(#arrow)", "data-edge": `${p}->${n.id}`,
      }));
    }
  }
  for (const n of nodes) {
    const { x, y } = pos.get(n.id);
    const state = n.state || "waiting";
    const g = el("g", {
      class: `node ${state}${n.id === selected ? " selected" : ""}`,
      transform: `translate(${x},${y})`,
      tabindex: "0",
      role: "button",
      "data-node": n.id,
      "data-state": state,
      "aria-label": `${n.id}, ${STATE_LABEL[state] || state}: ${n.question}`,
      "aria-pressed": n.id === selected ? "true" : "false",
    });
    g.append(el("title", {}, n.question));
    g.append(el("rect", { width: W, height: H, rx: "8" }));
    g.append(el("text", { class: "nid", x: "9", y: "16" }, `${n.id} · ${STATE_LABEL[state] || state}`));
    const text = el("text", { class: "q", x: "9", y: "33" });
    wrap(n.question, font).forEach((line, i) => text.append(el("tspan", { x: "9", dy: i ? "14" : "0" }, line)));
    g.append(text);
    const open = () => onSelect(n.id);
    g.addEventListener("click", open);
    g.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        open();
      }
    });
    svg.append(g);
  }
  container.replaceChildren(svg);
  if (focused) svg.querySelector(`[data-node="${CSS.escape(focused)}"]`)?.focus();
}
