// Usage: tokens per day over the last 30 days as an SVG bar chart, stacked by model, with the
// same figures in a table.
import { api } from "./api.js";
import { h, notify } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["var(--accent)", "#c2703d", "#6b5fb5", "#3d8c40", "#b5455f", "#8a8a3d"];

function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  element.append(...children);
  return element;
}

export async function usagePage(view) {
  const days = 30;
  const section = h("section", { class: "page" }, h("h1", {}, "Usage"), h("p", { class: "muted" }, `Tokens per day, last ${days} days.`));
  view.replaceChildren(section);
  let rows;
  try {
    ({ data: { data: rows } } = await api("GET", `/v1/usage?days=${days}`));
  } catch (error) {
    notify(error.message, "error");
    return;
  }
  const models = [...new Set(rows.map((row) => row.model))].sort();
  const dayList = Array.from({ length: days }, (_, n) => new Date(Date.now() - (days - 1 - n) * 86400000).toISOString().slice(0, 10));
  const tokens = (day, model) => rows.filter((r) => r.day === day && r.model === model).reduce((sum, r) => sum + r.prompt_tokens + r.completion_tokens, 0);
  const totals = dayList.map((day) => models.reduce((sum, model) => sum + tokens(day, model), 0));
  section.append(chart(dayList, models, tokens, Math.max(1, ...totals)), legend(models), table(rows));
}

function chart(dayList, models, tokens, highest) {
  const width = 720, height = 240, left = 48, right = 24, top = 12, bottom = 24, barGap = 4;
  const barWidth = (width - left - right) / dayList.length - barGap;
  const y = (value) => ((height - bottom - top) * value) / highest;
  const figure = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
    "aria-label": `Tokens per day, highest ${highest.toLocaleString()}` });
  figure.append(svg("line", { x1: left, x2: width - right, y1: height - bottom, y2: height - bottom, class: "axis" }));
  for (const fraction of [0.5, 1]) {
    const at = height - bottom - y(highest * fraction);
    figure.append(svg("text", { x: left - 6, y: at + 4, "text-anchor": "end", class: "tick" }, compact(highest * fraction)),
      svg("line", { x1: left, x2: width - right, y1: at, y2: at, class: "grid" }));
  }
  dayList.forEach((day, n) => {
    const x = left + n * (barWidth + barGap) + barGap / 2;
    let base = height - bottom;
    models.forEach((model, m) => {
      const value = tokens(day, model);
      if (!value) return;
      base -= y(value);
      figure.append(svg("rect", { x, y: base, width: barWidth, height: y(value), fill: COLORS[m % COLORS.length] },
        svg("title", {}, `${day} · ${model}: ${value.toLocaleString()} tokens`)));
    });
    if (n % 5 === 4 || n === dayList.length - 1) {
      figure.append(svg("text", { x: x + barWidth / 2, y: height - 6, "text-anchor": "middle", class: "tick" }, day.slice(5)));
    }
  });
  return figure;
}

function compact(value) {
  return value >= 1e6 ? `${(value / 1e6).toFixed(1)}M` : value >= 1e3 ? `${(value / 1e3).toFixed(1)}k` : String(Math.round(value));
}

function legend(models) {
  return h("ul", { class: "legend" }, models.map((model, m) =>
    h("li", {}, h("span", { class: "swatch", "data-color": m % COLORS.length }), model)));
}

function table(rows) {
  if (!rows.length) return h("p", { class: "empty" }, "No usage yet.");
  return h("div", { class: "table-wrap" }, h("table", { class: "usage" },
    h("thead", {}, h("tr", {}, ["Day", "Model", "Requests", "Prompt tokens", "Answer tokens"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, h("td", {}, r.day), h("td", {}, r.model), h("td", {}, r.requests.toLocaleString()),
      h("td", {}, r.prompt_tokens.toLocaleString()), h("td", {}, r.completion_tokens.toLocaleString()))))));
}
