// Documents: upload a file (its progress bar follows the ingestion job's events to 100%),
// list them with their state, delete them.
import { api, followJob } from "./api.js";
import { $, formatDate, h, notify } from "./dom.js";

// The ingestion streams the page follows; closed when the page is left (a browser allows only
// a few connections to one server at once).
const following = new Set();

export function leaveDocuments() {
  for (const stop of following) stop();
  following.clear();
}

const FORMATS = { txt: "text", text: "text", md: "markdown", markdown: "markdown", html: "html", htm: "html", pdf: "pdf" };

export async function documentsPage(view) {
  view.replaceChildren(h("section", { class: "page" },
    h("h1", {}, "Documents"),
    h("p", { class: "muted" }, "Answers in chat can come from these (tick “From my documents”), with their sources cited."),
    h("form", { id: "upload", class: "card row" },
      h("label", { class: "field" }, h("span", {}, "Text, Markdown, HTML or PDF file"),
        h("input", { type: "file", id: "file", required: true, accept: ".txt,.text,.md,.markdown,.html,.htm,.pdf" })),
      h("button", { type: "submit" }, "Upload")),
    h("ul", { id: "documents", class: "list", "aria-label": "Your documents" })));
  $("#upload").addEventListener("submit", upload);
  const list = $("#documents");
  try {
    const { data } = await api("GET", "/v1/documents?limit=100");
    list.replaceChildren(...data.data.map(documentItem));
  } catch (error) { notify(error.message, "error"); }
}

async function upload(event) {
  event.preventDefault();
  const file = $("#file").files[0];
  if (!file) return;
  const extension = file.name.split(".").pop().toLowerCase();
  const format = FORMATS[extension];
  if (!format) return notify("Upload a .txt, .md, .html or .pdf file.", "error");
  const form = event.target;
  const list = $("#documents");
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const content = format === "pdf" ? await base64(file) : await file.text();
    const { data } = await api("POST", "/v1/documents", {
      content, format, title: file.name.replace(/\.[^.]+$/, ""), source: file.name });
    // The same content again is the same document: it moves to the top rather than repeat.
    list.querySelector(`li[data-id="${data.id}"]`)?.remove();
    list.prepend(documentItem(data));
    form.reset();
  } catch (error) {
    notify(error.message, "error");
  } finally {
    button.disabled = false;
  }
}

function base64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",")[1] ?? "");
    reader.onerror = () => reject(new Error("The file could not be read."));
    reader.readAsDataURL(file);
  });
}

// A document's row; one still being read shows its progress (unless `follow` is false: its
// ingestion's events were lost, and following them again would only lose them again).
function documentItem(doc, follow = true) {
  const state = h("span", { class: "state" }, stateText(doc));
  const bar = h("progress", { max: 100, value: doc.status === "ready" ? 100 : 0, "aria-label": `Ingestion of ${doc.title}` });
  const remove = h("button", { type: "button", class: "secondary" }, "Delete");
  const item = h("li", { "data-id": doc.id, "data-status": doc.status },
    h("div", { class: "grow" }, h("strong", {}, doc.title || doc.source || "Untitled"),
      h("span", { class: "muted" }, ` ${formatDate(doc.created_at)} · ${Math.ceil(doc.bytes / 1024)} KB`), h("br"), state, bar),
    remove);
  bar.hidden = doc.status !== "processing";
  remove.addEventListener("click", async () => {
    if (!confirm(`Delete “${doc.title}”? Chats will no longer cite it.`)) return;
    try {
      await api("DELETE", `/v1/documents/${doc.id}`);
      item.remove();
    } catch (error) { notify(error.message, "error"); }
  });
  if (follow && doc.status === "processing" && doc.job_id) {
    const ended = (followAgain = true) => {
      following.delete(stop);
      refresh(item, doc.id, followAgain);
    };
    const stop = followJob(doc.job_id, {
      progress: ({ done, total }) => {
        bar.value = total > 0 ? Math.round((100 * done) / total) : 0;
        state.textContent = `Reading: ${done} of ${total} passages`;
      },
      completed: () => ended(), error: () => ended(), cancelled: () => ended(),
      lost: () => { stop(); ended(false); },
    });
    following.add(stop);
  }
  return item;
}

async function refresh(item, id, follow) {
  try {
    const { data } = await api("GET", `/v1/documents/${id}`);
    if (item.isConnected) item.replaceWith(documentItem(data, follow));
  } catch (error) { notify(error.message, "error"); }
}

function stateText(doc) {
  if (doc.status === "ready") return `Ready: ${doc.chunks} passage${doc.chunks === 1 ? "" : "s"}`;
  if (doc.status === "failed") return `Failed: ${doc.error ?? "the document could not be read"}`;
  return "Reading…";
}
