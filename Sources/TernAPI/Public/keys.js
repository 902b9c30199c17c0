// API keys: create one (its secret is shown once, here), list them, revoke them.
import { api } from "./api.js";
import { $, field, formatDate, h, notify } from "./dom.js";

export async function keysPage(view) {
  view.replaceChildren(h("section", { class: "page" },
    h("h1", {}, "API keys"),
    h("p", { class: "muted" }, "For the OpenAI-compatible API: set the key as the bearer token, base URL ", h("code", {}, `${location.origin}/v1`), "."),
    h("form", { id: "new-key", class: "card row" },
      field("Name", { id: "key-name", required: true, maxlength: 100, placeholder: "e.g. laptop" }),
      h("button", { type: "submit" }, "Create key")),
    h("div", { id: "new-secret" }),
    h("ul", { id: "keys", class: "list", "aria-label": "Your API keys" })));
  const shown = $("#new-secret");
  $("#new-key").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    try {
      const { data } = await api("POST", "/v1/keys", { name: $("#key-name").value });
      form.reset();
      const secret = h("code", { id: "secret" }, data.key);
      const copy = h("button", { type: "button", class: "secondary" }, "Copy");
      copy.addEventListener("click", () => navigator.clipboard?.writeText(data.key).then(() => notify("Copied.")));
      shown.replaceChildren(h("div", { class: "card secret", role: "alert" },
        h("p", {}, h("strong", {}, "Copy your new key now: "), "it is not shown again."), secret, copy));
      list();
    } catch (error) { notify(error.message, "error"); }
  });
  await list();
}

async function list() {
  const keys = $("#keys");
  try {
    const { data } = await api("GET", "/v1/keys");
    keys.replaceChildren(...data.data.map(keyItem));
  } catch (error) { notify(error.message, "error"); }
}

function keyItem(key) {
  const revoked = key.revoked_at != null;
  const item = h("li", { "data-id": key.id, class: revoked ? "revoked" : "" },
    h("div", { class: "grow" }, h("strong", {}, key.name), " ", h("code", {}, `${key.prefix}…`), h("br"),
      h("span", { class: "muted" }, `Created ${formatDate(key.created_at)}`, revoked ? ` · revoked ${formatDate(key.revoked_at)}` : "")));
  if (!revoked) {
    const revoke = h("button", { type: "button", class: "secondary" }, "Revoke");
    revoke.addEventListener("click", async () => {
      if (!confirm(`Revoke “${key.name}”? Programs using it stop working at once.`)) return;
      try {
        await api("DELETE", `/v1/keys/${key.id}`);
        list();
      } catch (error) { notify(error.message, "error"); }
    });
    item.append(revoke);
  }
  return item;
}
