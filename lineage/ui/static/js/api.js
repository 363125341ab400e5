// Calls to the lineage service. The API key lives in sessionStorage (this tab only) and travels in the
// Authorization header, never in a URL: URLs end up in logs and browser history.
const KEY_ITEM = "chaintrace.apiKey";

export class AuthError extends Error {}

export function apiKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

export function authHeaders(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
}

async function request(path, accept, params) {
  const url = params ? `${path}?${new URLSearchParams(params)}` : path;
  const reply = await fetch(url, { headers: authHeaders({ Accept: accept }) });
  if (reply.status === 401) throw new AuthError("the API key is missing or not valid");
  if (!reply.ok) {
    let message = `${reply.status} ${reply.statusText}`;
    try { message = (await reply.json()).message || message; } catch { /* not JSON */ }
    const error = new Error(message);
    error.status = reply.status;
    throw error;
  }
  return reply;
}

export async function getJson(path, params) {
  return (await request(path, "application/json", params)).json();
}

export async function getText(path, params) {
  return (await request(path, "text/html", params)).text();
}

export function enc(name) {
  // Names with '/' travel as %2F in one path segment (the service decodes them).
  return encodeURIComponent(name);
}
