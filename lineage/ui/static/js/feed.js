// The live feed: GET /api/v1/stream read with fetch() and a streaming body reader, not EventSource,
// because EventSource cannot send an Authorization header and the key must never go in a URL. The
// service ends each stream after 30 s; we reconnect with Last-Event-ID and resume where we were.
import { AuthError, authHeaders } from "./api.js";

const MAX_ITEMS = 200;
const RETRY_MS = 1000;

export class LiveFeed {
  constructor(list, dot, { onItem } = {}) {
    this.list = list;
    this.dot = dot;
    this.onItem = onItem || (() => {});
    this.lastEventId = null;
    this.controller = null;
  }

  start() {
    this.stop();
    this.controller = new AbortController();
    this._loop(this.controller.signal);
  }

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
    this.dot.classList.remove("live");
  }

  async _loop(signal) {
    while (!signal.aborted) {
      try {
        await this._read(signal);
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof AuthError) { this.dot.title = error.message; return; }
      }
      this.dot.classList.remove("live");
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }

  async _read(signal) {
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    const reply = await fetch("/api/v1/stream", { headers, signal, cache: "no-store" });
    if (reply.status === 401) throw new AuthError("the live feed needs a valid key");
    if (!reply.ok || !reply.body) throw new Error(`stream: ${reply.status}`);
    this.dot.classList.add("live");
    const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        this._frame(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
      }
    }
  }

  _frame(text) {
    let type = "message";
    const data = [];
    for (const line of text.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const at = line.indexOf(":");
      const field = at < 0 ? line : line.slice(0, at);
      const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
      if (field === "id") this.lastEventId = value;
      else if (field === "event") type = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return;
    let body;
    try { body = JSON.parse(data.join("\n")); } catch { return; }
    this._show(type, body);
  }

  _show(type, body) {
    const li = document.createElement("li");
    li.className = type;
    const time = new Date().toLocaleTimeString();
    if (type === "alert") {
      li.textContent = `${time} ALERT ${body.severity || ""} ${body.rule || body.kind || ""}: ${body.message || ""}`;
    } else if (type === "event") {
      const job = body.job ? `${body.job.namespace}:${body.job.name}` : (body.dataset ? body.dataset.name : "");
      const outputs = (body.outputs || []).map((d) => d.name).join(", ");
      li.textContent = `${time} ${body.eventType || "EVENT"} ${job}${outputs ? ` → ${outputs}` : ""}`;
    } else {
      li.textContent = `${time} ${type}: ${body.message || ""}`;
    }
    li.dataset.type = type;
    this.list.prepend(li);
    while (this.list.children.length > MAX_ITEMS) this.list.lastChild.remove();
    this.onItem(type, body);
  }
}
