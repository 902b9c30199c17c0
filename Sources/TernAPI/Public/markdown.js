// A small Markdown renderer that builds DOM nodes: text is only ever set as text, links only
// to http(s), so a model's answer can never inject markup or script. Handles what models
// write: paragraphs, headings, lists, quotes, fenced code blocks, `code`, **bold**, *italic*
// and [links](https://...). Unfinished syntax (mid-stream) renders as the text it is so far.
import { h } from "./dom.js";

export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  let index = 0;
  while (index < lines.length) {
    const line = lines[index];
    const fence = line.match(/^\s*(```|~~~)\s*([\w+-]*)/);
    if (fence) {
      const code = [];
      index += 1;
      while (index < lines.length && !lines[index].trimStart().startsWith(fence[1])) code.push(lines[index++]);
      index += 1;
      const block = h("code", fence[2] ? { "data-language": fence[2] } : {}, code.join("\n"));
      fragment.append(h("pre", {}, block));
      continue;
    }
    const heading = line.match(/^(#{1,4})\s+(.*)$/);
    if (heading) {
      fragment.append(h(`h${heading[1].length + 2}`, {}, inline(heading[2])));
      index += 1;
      continue;
    }
    const listMarker = /^\s*([-*+]|\d{1,3}[.)])\s+/;
    if (listMarker.test(line)) {
      const ordered = /^\s*\d/.test(line);
      const list = h(ordered ? "ol" : "ul");
      while (index < lines.length && listMarker.test(lines[index]) && /^\s*\d/.test(lines[index]) === ordered) {
        list.append(h("li", {}, inline(lines[index].replace(listMarker, ""))));
        index += 1;
      }
      fragment.append(list);
      continue;
    }
    if (line.startsWith(">")) {
      const quoted = [];
      while (index < lines.length && lines[index].startsWith(">")) quoted.push(lines[index++].replace(/^>\s?/, ""));
      fragment.append(h("blockquote", {}, renderMarkdown(quoted.join("\n"))));
      continue;
    }
    if (!line.trim()) { index += 1; continue; }
    const paragraph = [];
    while (index < lines.length && lines[index].trim() && !startsBlock(lines[index])) paragraph.push(lines[index++]);
    if (!paragraph.length) paragraph.push(lines[index++]);
    const p = h("p");
    paragraph.forEach((text, n) => { if (n) p.append(h("br")); p.append(...inline(text)); });
    fragment.append(p);
  }
  return fragment;
}

function startsBlock(line) {
  return /^\s*(```|~~~)/.test(line) || /^#{1,4}\s/.test(line) || /^\s*([-*+]|\d{1,3}[.)])\s+/.test(line) || line.startsWith(">");
}

// Inline spans: `code` first (nothing inside it is formatting), then links, bold, italic.
// Bold may hold italic and italic bold; a link's URL may hold balanced parentheses; underscores
// only count at word edges, so snake_case names stay as they are.
const INLINE = /`([^`]+)`|\[([^\]]{1,500})\]\((https?:\/\/(?:[^\s()]|\([^\s()]*\))+)\)|\*\*(?=\S)(.+?)\*\*(?!\*)|(?<!\w)__(?=\S)(.+?)__(?!\w)|\*(?![*\s])((?:\*\*.+?\*\*|[^*])+?)\*(?!\*)|(?<!\w)_(?![_\s])((?:__.+?__|[^_])+?)_(?!\w)/;

function inline(text) {
  const nodes = [];
  let rest = text;
  for (let match = rest.match(INLINE); match; match = rest.match(INLINE)) {
    if (match.index) nodes.push(rest.slice(0, match.index));
    const [, code, label, href, bold, bold2, em, em2] = match;
    if (code !== undefined) nodes.push(h("code", {}, code));
    else if (href !== undefined) nodes.push(h("a", { href, rel: "noopener noreferrer nofollow", target: "_blank" }, label));
    else if (bold !== undefined || bold2 !== undefined) nodes.push(h("strong", {}, inline(bold ?? bold2)));
    else nodes.push(h("em", {}, inline(em ?? em2)));
    rest = rest.slice(match.index + match[0].length);
  }
  if (rest) nodes.push(rest);
  return nodes;
}
