// Tern's chat page: the user's message shows at once, the answer streams in token by token.
// Text is only ever inserted with textContent, so messages can never inject markup.

const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");
const modelSelect = $("model");
const messagesList = $("messages");
const prompt = $("prompt");
const composer = $("composer");
const sendButton = $("send");

const conversation = [];

function loadKey() {
  const fromFragment = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromFragment) {
    localStorage.setItem("tern.apiKey", fromFragment);
    window.history.replaceState(null, "", location.pathname);
  }
  keyInput.value = localStorage.getItem("tern.apiKey") || "";
}

async function loadModels() {
  const key = keyInput.value.trim();
  if (!key) return;
  try {
    const response = await fetch("/v1/models", { headers: { Authorization: `Bearer ${key}` } });
    if (!response.ok) return;
    const { data } = await response.json();
    modelSelect.replaceChildren(...data.map(({ id }) => new Option(id, id)));
  } catch { /* the list stays as it is; sending will report the problem */ }
}

function addMessage(role, text) {
  $("empty").hidden = true;
  const item = document.createElement("li");
  item.className = `message ${role}`;
  item.textContent = text;
  messagesList.append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

// Parses a Server-Sent Events body, calling onData with each event's data, until onData
// returns false. A body that ends before that was cut off.
async function readEvents(response, onData) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("The connection closed before the answer was complete.");
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trimStart()).join("\n");
      if (data && onData(data) === false) {
        reader.cancel();
        return;
      }
    }
  }
}

function errorText(status, body) {
  const message = body?.error?.message;
  if (status === 401) return "The API key was not accepted. Paste the key printed by `tern up`.";
  if (status === 429) return `Too many requests. ${message ?? "Try again shortly."}`;
  if (status === 503) return `The service is busy. ${message ?? "Try again shortly."}`;
  return message ?? `The request failed (${status}).`;
}

async function send(text) {
  const key = keyInput.value.trim();
  localStorage.setItem("tern.apiKey", key);
  addMessage("user", text);
  conversation.push({ role: "user", content: text });
  const bubble = addMessage("assistant", "");
  bubble.classList.add("typing");
  bubble.setAttribute("aria-busy", "true");
  sendButton.disabled = true;
  let answer = "";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
      body: JSON.stringify({ model: modelSelect.value || "smollm2-135m", stream: true, messages: conversation }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      throw new Error(errorText(response.status, body));
    }
    bubble.dataset.jobId = response.headers.get("X-Tern-Job-Id") ?? "";
    await readEvents(response, (data) => {
      if (data === "[DONE]") return false;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const piece = chunk.choices?.[0]?.delta?.content;
      if (piece) {
        if (!answer) bubble.classList.remove("typing");
        answer += piece;
        bubble.textContent = answer;
        bubble.scrollIntoView({ block: "end" });
      }
    });
    conversation.push({ role: "assistant", content: answer });
    bubble.dataset.state = "done";
  } catch (error) {
    bubble.classList.add("error");
    bubble.textContent = answer ? `${answer}\n\n${error.message}` : error.message;
    bubble.dataset.state = "error";
    conversation.pop();
  } finally {
    bubble.classList.remove("typing");
    bubble.removeAttribute("aria-busy");
    sendButton.disabled = false;
  }
}

composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = prompt.value.trim();
  if (!text || sendButton.disabled) return;
  prompt.value = "";
  send(text);
});

prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    composer.requestSubmit();
  }
});

keyInput.addEventListener("change", loadModels);
loadKey();
modelSelect.append(new Option("smollm2-135m", "smollm2-135m"));
loadModels();
prompt.focus();
