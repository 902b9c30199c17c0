// Building the page: elements from plain data, text only ever through textContent.

// h("p", { class: "note" }, "text", child...): attributes are set as attributes (on* are
// refused), strings become text nodes, so no user text is ever parsed as markup.
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) throw new Error(`h: use addEventListener, not ${name}`);
    element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

export const $ = (selector, root = document) => root.querySelector(selector);

// A labelled form field: <label>Text <input ...></label>.
export function field(label, attributes) {
  return h("label", { class: "field" }, h("span", {}, label), h(attributes.rows ? "textarea" : "input", attributes));
}

export function formatDate(seconds) {
  return new Date(seconds * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// A message in the page's status line, read out by screen readers.
export function notify(text, kind = "info") {
  const toast = $("#toast");
  toast.textContent = text;
  toast.dataset.kind = kind;
  toast.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { toast.hidden = true; }, 6000);
}
