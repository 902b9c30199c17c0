// Talking to Tern's API with the session cookie: JSON in and out, the CSRF token on every
// write, errors in plain words, and job event streams that resume where they stopped.

let csrfToken = "";
export function setCsrfToken(token) { csrfToken = token ?? ""; }

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super(plainWords(body?.error, { status, retryAfter }));
    this.status = status;
    this.code = body?.error?.code ?? "";
  }
}

// What went wrong, for a person: when to retry, what is unavailable. `error` is an API error
// body's `error` or a job's `error` event ({code, message}); `status` is the HTTP status, if any.
export function plainWords(error, { status, retryAfter } = {}) {
  const wait = retryAfter ? ` Try again in ${retryAfter} second${retryAfter === "1" ? "" : "s"}.` : " Try again shortly.";
  switch (error?.code) {
    case "queue_full": return `The service is busy: too many answers are being written right now.${wait}`;
    case "model_not_found": return "That model is not available on this server. Pick another one.";
    case "upstream_error": case "model_not_served": return "The model is unavailable right now. Try again in a moment.";
    case "context_length_exceeded": return "This conversation is too long for the model. Start a new chat.";
    case "redis_unavailable": case "database_unavailable": return `The service is having trouble reaching its storage.${wait}`;
  }
  if (status === 429) return `You are sending requests too fast.${wait}`;
  if (status === 401) return error?.message ?? "Please log in again.";
  if (status === 0) return "The server cannot be reached. Check your connection.";
  return error?.message || (status ? `The request failed (${status}).` : "The answer could not be completed.");
}

export async function api(method, path, body, { headers: extra = {} } = {}) {
  const headers = { ...extra };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken;
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  } catch {
    throw new ApiError(0, null);
  }
  if (response.status === 204) return { data: null, response };
  const data = await response.json().catch(() => null);
  if (response.status === 401 && !path.startsWith("/v1/auth/")) window.dispatchEvent(new Event("tern:signed-out"));
  if (!response.ok) throw new ApiError(response.status, data, response.headers.get("Retry-After"));
  return { data, response };
}

// Follows a job's events (GET /v1/jobs/{id}/events) from the first: handlers[type](data, id)
// for each; a dropped connection comes back by itself with Last-Event-ID, so nothing is
// missed or repeated. Ends at completed, error or cancelled; returns a function that stops it.
export function followJob(jobId, handlers) {
  const source = new EventSource(`/v1/jobs/${encodeURIComponent(jobId)}/events`);
  const end = () => source.close();
  const deliver = (type, event) => {
    let data = {};
    try { data = JSON.parse(event.data); } catch { /* an empty event */ }
    if (["completed", "error", "cancelled"].includes(type)) end();
    handlers[type]?.(data, event.lastEventId);
  };
  for (const type of ["start", "token", "sources", "done", "progress", "completed", "cancelled", "stream_error"]) {
    source.addEventListener(type, (event) => deliver(type, event));
  }
  // "error" is both the job's own event (with data) and EventSource's word for a lost connection.
  source.addEventListener("error", (event) => {
    if (typeof event.data === "string") return deliver("error", event);
    // CLOSED: the browser gave up (the job is gone, or the session ended); otherwise it is
    // reconnecting with Last-Event-ID.
    if (source.readyState === EventSource.CLOSED) handlers.lost?.();
    else handlers.reconnecting?.();
  });
  return end;
}
