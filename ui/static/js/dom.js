// Small DOM helpers. Text from the service (answers, documents, names) only ever enters the
// page as text nodes, never as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export const $ = (selector, root = document) => root.querySelector(selector);

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// Re-render `container` and give focus back to the control that had it (matched by its
// data-key), so periodic refreshes never take keyboard focus away.
export function keepFocus(container, render) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset?.key : undefined;
  render();
  if (!key) return;
  const again = container.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (again) again.focus({ preventScroll: true });
  else if (container.hasAttribute("tabindex")) container.focus({ preventScroll: true }); // the control is gone
}

// Tell screen readers something once (a polite live region), however often the page re-renders.
export function announce(message) {
  const live = document.getElementById("live");
  if (!live) return;
  live.textContent = "";
  setTimeout(() => { live.textContent = message; }, 50);
}

// An error for the page's banner (main.js shows it).
export function flash(message) {
  document.dispatchEvent(new CustomEvent("quarry:error", { detail: message }));
}

export const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

export function bytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KB", "MB", "GB"];
  const i = Math.min(units.length - 1, Math.floor(Math.log(n) / Math.log(1024)));
  return `${(n / 1024 ** i).toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso.endsWith("Z") || /[+-]\d\d:\d\d$/.test(iso) ? iso : `${iso}Z`);
  return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });
}

// Answer text with each [n] (or [n, m]) turned into links that call onCite(n); `key`
// prefixes the links' data-key (see keepFocus).
export function cited(text, citations, onCite, key = "cite") {
  const known = new Map((citations || []).map((c) => [c.n, c]));
  const out = [];
  let last = 0;
  for (const m of text.matchAll(/\[(\d+(?:\s*,\s*\d+)*)\]/g)) {
    out.push(text.slice(last, m.index));
    const numbers = m[1].split(",").map((s) => Number(s.trim()));
    out.push("[");
    numbers.forEach((n, i) => {
      if (i) out.push(", ");
      const c = known.get(n);
      out.push(
        c
          ? h("a", { href: "#", class: "cite", dataset: { n, key: `${key}-${out.length}` }, title: `${c.title || c.document}`,
            onclick: (e) => { e.preventDefault(); onCite(c); } }, String(n))
          : String(n),
      );
    });
    out.push("]");
    last = m.index + m[0].length;
  }
  out.push(text.slice(last));
  return out;
}

export async function copy(textToCopy) {
  try {
    await navigator.clipboard.writeText(textToCopy);
    return true;
  } catch {
    const area = h("textarea", { class: "visually-hidden" });
    area.value = textToCopy;
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}

export function progressBar(fraction, label) {
  const pct = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
  const fill = h("span");
  fill.style.width = `${pct}%`; // CSSOM, not a style attribute: the page's CSP allows no inline styles
  return h("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
    "aria-valuenow": pct, "aria-label": label || "progress" }, fill);
}
