// Tern's web app: one page, a view per hash route (#/chat, #/chat/ID, #/documents, #/keys,
// #/usage, #/login, #/signup). The session lives in an HttpOnly cookie; the CSRF token it
// comes with is kept in memory and sent with every write.
import { api, setCsrfToken } from "./api.js";
import { chatPage, leaveChat } from "./chat.js";
import { documentsPage, leaveDocuments } from "./documents.js";
import { $, field, h, notify } from "./dom.js";
import { keysPage } from "./keys.js";
import { usagePage } from "./usage.js";

let session = null;

async function loadSession() {
  try {
    const { data } = await api("GET", "/v1/auth/session");
    signedIn(data);
  } catch {
    signedIn(null);
  }
}

function signedIn(data) {
  session = data;
  setCsrfToken(data?.csrf_token);
  $("#nav").hidden = !data;
  $("#who").textContent = data?.user.email ?? "";
}

const pages = { chat: chatPage, documents: documentsPage, keys: keysPage, usage: usagePage };

async function route() {
  const [, name = "chat", id] = location.hash.split("/");
  const view = $("#view");
  leaveChat();
  leaveDocuments();
  if (!session) return authPage(view, name === "signup" ? "signup" : "login");
  const page = pages[name] ?? chatPage;
  for (const link of document.querySelectorAll("#nav a")) {
    link.toggleAttribute("aria-current", link.getAttribute("href") === `#/${pages[name] ? name : "chat"}`);
  }
  await page(view, id);
}

function authPage(view, mode) {
  const signup = mode === "signup";
  const error = h("p", { class: "form-error", role: "alert", hidden: true });
  const form = h("form", { class: "card auth", id: "auth-form" },
    h("h1", {}, signup ? "Create your account" : "Log in to Tern"),
    field("E-mail", { id: "email", type: "email", autocomplete: "email", required: true }),
    field("Password", { id: "password", type: "password", autocomplete: signup ? "new-password" : "current-password",
      required: true, minlength: signup ? 8 : undefined, maxlength: 72 }),
    error,
    h("button", { type: "submit" }, signup ? "Sign up" : "Log in"),
    h("p", { class: "muted" }, signup ? "Have an account? " : "New here? ",
      h("a", { href: signup ? "#/login" : "#/signup" }, signup ? "Log in" : "Create an account")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    error.hidden = true;
    try {
      const { data } = await api("POST", signup ? "/v1/auth/signup" : "/v1/auth/login",
        { email: $("#email").value, password: $("#password").value });
      signedIn(data);
      // Back to the page that asked for a log-in, or to the chat.
      if (/^(#\/?(login|signup)?)?$/.test(location.hash)) location.hash = "#/chat"; else route();
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  view.replaceChildren(form);
  $("#email").focus();
}

$("#logout").addEventListener("click", async () => {
  try { await api("POST", "/v1/auth/logout"); } catch (error) { notify(error.message, "error"); }
  signedIn(null);
  location.hash = "#/login";
  route();
});

// The skip link moves the focus without touching the route.
$(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  $("#view").focus();
});
// A session that ended (expired, logged out elsewhere): back to the log-in page.
window.addEventListener("tern:signed-out", () => {
  if (!session) return;
  signedIn(null);
  notify("Your session ended. Log in again.");
  route();
});
window.addEventListener("hashchange", route);
await loadSession();
route();
