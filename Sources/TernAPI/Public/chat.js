// The chat page: conversations on the side, the thread, the composer. The user's message shows
// at once; the answer bubble types until the first token, then grows piece by piece. An answer
// still being written when the page opens (a reload, another tab) is followed from its job's
// events, so it shows the text so far and goes on live. Stop cancels the job.
import { api, followJob, plainWords } from "./api.js";
import { $, h, notify } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

let current = null;  // { conversation, job, stopFollowing }

// Stops following the answer being written (the job goes on; opening its chat resumes it).
export function leaveChat() {
  current?.stopFollowing?.();
  current = null;
}

export async function chatPage(view, conversationId) {
  leaveChat();
  current = { conversation: conversationId ?? null, job: null, stopFollowing: null, models: null, stopRequested: false };
  view.replaceChildren(
    h("div", { class: "chat" },
      h("aside", { class: "conversations", "aria-label": "Conversations" },
        h("a", { class: "button", href: "#/chat", id: "new-chat" }, "New chat"),
        h("ul", { id: "conversation-list" })),
      h("section", { class: "thread", "aria-label": "Chat" },
        h("div", { id: "scroll", class: "scroll" },
          h("ol", { id: "messages", class: "messages", "aria-live": "polite" }),
          h("p", { id: "empty", class: "empty" }, "Ask anything. Answers appear as the model writes them.")),
        h("form", { id: "composer", class: "composer" },
          h("label", { for: "prompt", class: "visually-hidden" }, "Message"),
          h("textarea", { id: "prompt", rows: 2, required: true, maxlength: 60000,
            placeholder: "Message Tern (Enter sends, Shift+Enter for a new line, Esc stops)" }),
          h("div", { class: "tools" },
            h("label", {}, "Model ", h("select", { id: "model" })),
            h("label", {}, h("input", { type: "checkbox", id: "use-documents" }), " From my documents"),
            h("button", { id: "send", type: "submit" }, "Send"),
            h("button", { id: "stop", type: "button", class: "secondary", hidden: true }, "Stop"))))));
  $("#composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("#prompt").value.trim();
    if (!text || current.job) return;
    $("#prompt").value = "";
    send(text);
  });
  $("#prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("#composer").requestSubmit();
    }
  });
  $("#stop").addEventListener("click", stop);
  current.models = loadModels();
  listConversations();
  if (conversationId) await openConversation(conversationId);
  $("#prompt")?.focus();
}

// Esc stops the answer being written, wherever the focus is.
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && current?.job) stop();
});

async function loadModels() {
  const select = $("#model");
  try {
    const { data } = await api("GET", "/v1/models");
    const chat = data.data.filter((model) => model.kind === "chat");
    const saved = localStorage.getItem("tern.model");
    select.replaceChildren(...chat.map(({ id }) => new Option(id, id, false, id === saved)));
  } catch (error) { notify(error.message, "error"); }
}
document.addEventListener("change", (event) => {
  if (event.target.id === "model") localStorage.setItem("tern.model", event.target.value);
});

async function listConversations() {
  const list = $("#conversation-list");
  try {
    const { data } = await api("GET", "/v1/conversations?limit=50");
    list.replaceChildren(...data.data.map(conversationItem));
    list.dataset.loaded = "true";
  } catch (error) { notify(error.message, "error"); }
}

function conversationItem(conversation) {
  const link = h("a", { href: `#/chat/${conversation.id}`, "aria-current": conversation.id === current?.conversation ? "page" : false },
    conversation.title || "Untitled chat");
  const rename = h("button", { type: "button", class: "icon", title: "Rename", "aria-label": `Rename ${conversation.title}` }, "✎");
  const remove = h("button", { type: "button", class: "icon", title: "Delete", "aria-label": `Delete ${conversation.title}` }, "×");
  const item = h("li", { "data-id": conversation.id }, link, rename, remove);
  rename.addEventListener("click", () => startRename(item, conversation));
  remove.addEventListener("click", async () => {
    if (!confirm(`Delete “${conversation.title || "Untitled chat"}”? Its messages are gone for good.`)) return;
    try {
      await api("DELETE", `/v1/conversations/${conversation.id}`);
      item.remove();
      if (conversation.id === current?.conversation) location.hash = "#/chat";
    } catch (error) { notify(error.message, "error"); }
  });
  return item;
}

function startRename(item, conversation) {
  const input = h("input", { value: conversation.title, "aria-label": "New title", maxlength: 200 });
  const form = h("form", { class: "rename" }, input);
  item.replaceChildren(form);
  input.focus();
  input.select();
  let saving = false;
  const finish = () => item.replaceWith(conversationItem(conversation));
  input.addEventListener("keydown", (event) => { if (event.key === "Escape") { event.stopPropagation(); finish(); } });
  // Leaving the box cancels, unless the new title is already being saved.
  input.addEventListener("blur", () => { if (!saving) finish(); });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    saving = true;
    try {
      const { data } = await api("PATCH", `/v1/conversations/${conversation.id}`, { title: input.value });
      conversation = data;
    } catch (error) { notify(error.message, "error"); }
    finish();
  });
}

// Shows a conversation; the composer waits until it is there, so a new message comes after it.
async function openConversation(id) {
  const chat = current;
  chat.job = "loading";
  let conversation;
  try {
    ({ data: conversation } = await api("GET", `/v1/conversations/${id}`));
  } catch (error) {
    notify(error.message, "error");
    if (chat === current) location.hash = "#/chat";
    return;
  }
  if (chat !== current) return;
  chat.job = null;
  for (const message of conversation.messages) {
    if (message.role === "user") addUserMessage(message.content);
    else if (message.role === "assistant") showStoredAnswer(message);
  }
  if (conversation.pending_job) follow(conversation.pending_job, addAnswer());
}

function addMessage(item) {
  $("#empty").hidden = true;
  $("#messages").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function addUserMessage(text) {
  return addMessage(h("li", { class: "message user" }, h("div", { class: "body" }, text)));
}

// An answer bubble: typing until its first piece, then the Markdown of the text so far,
// re-rendered at most once a frame however fast the pieces come.
function addAnswer() {
  const body = h("div", { class: "body" });
  const item = addMessage(h("li", { class: "message assistant typing", "data-state": "waiting", "aria-busy": "true" }, body));
  const answer = { item, body, text: "", citations: null, frame: 0 };
  answer.render = () => {
    answer.frame = 0;
    const stick = nearBottom();
    body.replaceChildren(renderMarkdown(answer.text));
    if (stick) item.scrollIntoView({ block: "end" });
  };
  return answer;
}

// Whether the thread is scrolled to (near) its end: then it follows a growing answer.
function nearBottom() {
  const scroll = $("#scroll");
  return !scroll || scroll.scrollTop + scroll.clientHeight >= scroll.scrollHeight - 80;
}

function grow(answer, piece) {
  if (!piece) return;
  answer.text += piece;
  if (answer.item.dataset.state === "waiting") {
    answer.item.classList.remove("typing");
    answer.item.dataset.state = "streaming";
  }
  if (!answer.frame) answer.frame = requestAnimationFrame(answer.render);
}

// Ends an answer: "done", "stopped" (the partial answer stays, marked) or "error".
function settle(answer, state, note) {
  if (answer.frame) { cancelAnimationFrame(answer.frame); answer.render(); }
  answer.item.classList.remove("typing");
  answer.item.removeAttribute("aria-busy");
  answer.item.dataset.state = state;
  if (answer.citations?.length) answer.item.append(citationList(answer.citations));
  if (note) answer.item.append(h("p", { class: `note ${state}` }, note));
}

function showStoredAnswer(message) {
  const answer = addAnswer();
  answer.text = message.content;
  answer.citations = message.citations;
  answer.render();
  settle(answer, message.stopped ? "stopped" : "done", message.stopped ? "Stopped" : null);
}

function citationList(citations) {
  return h("ol", { class: "citations", "aria-label": "Sources" },
    citations.map((c) => h("li", { title: c.snippet }, h("span", { class: "cite" }, `[${c.index}]`), ` ${c.title}`,
      c.heading ? h("span", { class: "muted" }, ` — ${c.heading}`) : null)));
}

function setBusy(busy) {
  $("#send").hidden = busy;
  $("#stop").hidden = !busy;
}

// Sends a message; once the page has moved on (another chat, another page), the answer goes on
// being written on the server and shows when its chat is opened again.
async function send(text) {
  const chat = current;
  addUserMessage(text);
  const answer = addAnswer();
  setBusy(true);
  chat.job = "sending";
  await chat.models;
  if (chat !== current) return;
  const input = { model: $("#model").value || undefined, messages: [{ role: "user", content: text }] };
  if (chat.conversation) input.conversation = chat.conversation;
  if ($("#use-documents").checked) input.documents = "all";
  try {
    const { data: job, response } = await api("POST", "/v1/jobs", { type: "chat.completion", input });
    if (chat !== current) return;
    if (!chat.conversation) {
      chat.conversation = response.headers.get("X-Tern-Conversation-Id");
      history.replaceState(null, "", `#/chat/${chat.conversation}`);
      listConversations();
    }
    follow(job.id, answer);
    if (chat.stopRequested) stop();
  } catch (error) {
    if (chat !== current) return;
    chat.job = null;
    setBusy(false);
    settle(answer, "error", error.message);
  }
}

function follow(jobId, answer) {
  const chat = current;
  chat.job = jobId;
  setBusy(true);
  const finish = (state, note) => {
    settle(answer, state, note);
    if (chat === current && chat.job === jobId) { chat.job = null; setBusy(false); }
  };
  chat.stopFollowing = followJob(jobId, {
    token: ({ text }) => grow(answer, text),
    sources: ({ citations }) => { try { answer.citations = JSON.parse(citations); } catch { /* none shown */ } },
    completed: () => finish("done"),
    cancelled: () => finish("stopped", "Stopped"),
    error: (failure) => finish("error", plainWords(failure)),
    stream_error: () => { /* the browser reconnects and resumes by itself */ },
    lost: () => finish("error", "The connection to this answer was lost. Reload the page to pick it up again."),
  });
}

// Cancels the answer being written; pressed while the message is still on its way, once it
// has its job.
async function stop() {
  const job = current?.job;
  if (job === "sending") current.stopRequested = true;
  if (!job || job === "sending" || job === "loading") return;
  current.stopRequested = false;
  $("#stop").disabled = true;
  try {
    await api("POST", `/v1/jobs/${job}/cancel`);
  } catch (error) {
    notify(error.message, "error");
  } finally {
    $("#stop").disabled = false;
  }
}
