// app.js: the chat page. Talks only to the server that served it: GET /props for the
// model's name (it needs the API key where one is set, so a 401 there asks for it; /v1/models
// is public) and POST /v1/chat/completions with stream: true, read as Server-Sent Events
// through fetch and a ReadableStream so the answer appears as it is generated.
// What it must never do: put text from the user, the model or the server into the page as
// HTML. Every string goes in as a Text node or textContent. The server's Content-Security-Policy
// backs this up: no inline script, no remote source, and (Chromium) no HTML string sink at all.
"use strict";

const SETTINGS_KEY = "llamaserve.settings";
const API_KEY_KEY = "llamaserve.apiKey";
const DEFAULTS = { temperature: "0.8", top_p: "0.95", max_tokens: "", seed: "", system: "" };
// the settings form's fields: name -> how the value goes into a request ("" = left out)
const FIELDS = {
  temperature: (v) => Number(v),
  top_p: (v) => Number(v),
  max_tokens: (v) => Number(v),
  seed: (v) => Number(v),
};

const $ = (id) => document.getElementById(id);
const ui = {
  model: $("model-name"),
  newChat: $("new-chat"),
  settings: $("settings-form"),
  reset: $("reset-settings"),
  keyForm: $("key-form"),
  key: $("api-key"),
  log: $("log"),
  composer: $("composer"),
  prompt: $("prompt"),
  send: $("send"),
  stop: $("stop"),
  status: $("status"),
};

// The conversation as the API takes it: {role, content}, without the system prompt.
let history = [];
let running = null; // the AbortController of the answer being streamed, else null
let modelName = "model";

// --- storage (a browser that refuses storage still gets a working page) ---

function loadJSON(store, key, fallback) {
  try {
    const v = store.getItem(key);
    return v === null ? fallback : JSON.parse(v);
  } catch {
    return fallback;
  }
}

function saveJSON(store, key, value) {
  try {
    store.setItem(key, JSON.stringify(value));
  } catch {
    // private browsing or a full quota: the value lasts while the page is open
  }
}

function settingsFromForm() {
  const s = {};
  for (const name of Object.keys(DEFAULTS)) s[name] = ui.settings.elements[name].value;
  return s;
}

function showSettings(s) {
  for (const name of Object.keys(DEFAULTS))
    ui.settings.elements[name].value = typeof s[name] === "string" ? s[name] : DEFAULTS[name];
}

// --- the API ---

function apiKey() {
  return loadJSON(sessionStorage, API_KEY_KEY, "");
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = apiKey();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

// The message of a failed response: the OpenAI error object's, else the status line.
async function errorMessage(res) {
  let text = "";
  try {
    text = await res.text();
    const body = JSON.parse(text);
    if (body && body.error && body.error.message) return body.error.message;
  } catch {
    // not JSON: the text itself, or the status line below
  }
  return text.trim().slice(0, 500) || `HTTP ${res.status} ${res.statusText}`;
}

function askForKey() {
  ui.keyForm.hidden = false;
  ui.key.focus();
}

async function loadModel(attempt = 0) {
  let res;
  try {
    res = await fetch("/props", { headers: headers() });
  } catch (e) {
    ui.model.textContent = "server unreachable";
    return;
  }
  if (res.status === 401) {
    ui.model.textContent = "needs an API key";
    askForKey();
    return;
  }
  if (res.status === 503 && attempt < 120) {
    ui.model.textContent = "loading…";
    setTimeout(() => loadModel(attempt + 1), 1000);
    return;
  }
  if (!res.ok) {
    ui.model.textContent = await errorMessage(res);
    return;
  }
  const body = await res.json();
  modelName = body.model_alias || "model";
  ui.model.textContent = modelName;
  ui.keyForm.hidden = true;
}

// Yields the data of each Server-Sent Event in a response body, as a string.
async function* sseData(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf = (buf + value).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const data = event
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(l.startsWith("data: ") ? 6 : 5));
      if (data.length) yield data.join("\n");
    }
  }
}

// --- the conversation on the page ---

function addMessage(kind, who, text) {
  ui.log.querySelector(".empty")?.remove();
  const el = document.createElement("article");
  el.className = "msg " + kind;
  const label = document.createElement("h2");
  label.className = "who";
  label.textContent = who;
  const body = document.createElement("p");
  body.className = "text";
  body.textContent = text;
  el.append(label, body);
  if (kind === "error") el.setAttribute("role", "alert");
  const stick = nearBottom();
  ui.log.append(el);
  if (stick) scrollDown();
  return el;
}

function nearBottom() {
  const l = ui.log;
  return l.scrollHeight - l.scrollTop - l.clientHeight < 80;
}

let scrollQueued = false;
function scrollDown() {
  if (scrollQueued) return;
  scrollQueued = true;
  requestAnimationFrame(() => {
    scrollQueued = false;
    ui.log.scrollTop = ui.log.scrollHeight;
  });
}

function showEmpty() {
  const p = document.createElement("p");
  p.className = "empty";
  p.textContent = "Ask the model something. Enter sends, Shift+Enter adds a line.";
  ui.log.replaceChildren(p);
}

function setRunning(controller) {
  running = controller;
  ui.send.disabled = !!controller;
  ui.stop.disabled = !controller;
  ui.newChat.disabled = !!controller;
}

function fmt(x, digits) {
  return x.toLocaleString(undefined, { maximumFractionDigits: digits });
}

// "48 tokens, 412 tokens/s · first token 0.02 s · prompt 30 tokens (18 cached)"
function statsText(usage, t) {
  const n = usage.completion_tokens;
  const parts = [];
  let first = `${n} token${n === 1 ? "" : "s"}`;
  // Generation speed: the tokens after the first over the time since the first arrived. When
  // the whole answer came in one read (a short answer, a busy browser) there is no such time:
  // then the tokens over the whole request, prompt processing included.
  const rate = n >= 2 && t.last - t.first > 0 ? (n - 1) / (t.last - t.first) : n / (t.end - t.start);
  if (n > 0) first += `, ${fmt(rate * 1000, 1)} tokens/s`;
  parts.push(first);
  if (t.first) parts.push(`first token ${fmt((t.first - t.start) / 1000, 2)} s`);
  const cached = usage.prompt_tokens_details?.cached_tokens ?? 0;
  parts.push(`prompt ${usage.prompt_tokens} tokens (${cached} cached)`);
  return parts.join(" · ");
}

function requestBody() {
  const s = settingsFromForm();
  const messages = s.system.trim() ? [{ role: "system", content: s.system }] : [];
  const body = {
    messages: messages.concat(history),
    stream: true,
    stream_options: { include_usage: true },
  };
  for (const [name, conv] of Object.entries(FIELDS))
    if (s[name].trim() !== "") body[name] = conv(s[name]);
  return body;
}

async function send() {
  const text = ui.prompt.value;
  if (running || !text.trim()) return;
  ui.prompt.value = "";
  addMessage("user", "You", text);
  history.push({ role: "user", content: text });

  const reply = addMessage("assistant", modelName, "");
  reply.setAttribute("aria-busy", "true");
  reply.dataset.state = "streaming";
  const out = reply.querySelector(".text").appendChild(document.createTextNode(""));
  const controller = new AbortController();
  setRunning(controller);
  ui.status.textContent = "Generating…";
  const t = { start: performance.now(), first: 0, last: 0, end: 0 };
  let usage = null;
  let failure = null; // a message to show as an error

  try {
    const res = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify(requestBody()),
      signal: controller.signal,
    });
    if (!res.ok) {
      failure = await errorMessage(res);
      if (res.status === 401) {
        failure += " Enter the API key above, then send again.";
        askForKey();
      }
    } else {
      let complete = false;
      for await (const data of sseData(res.body)) {
        if (data === "[DONE]") {
          complete = true;
          break;
        }
        const ev = JSON.parse(data);
        if (ev.error) {
          failure = ev.error.message || "the server reported an error";
          break;
        }
        if (ev.usage) usage = ev.usage;
        const delta = ev.choices?.[0]?.delta?.content;
        if (delta) {
          t.last = performance.now();
          if (!t.first) t.first = t.last;
          const stick = nearBottom();
          out.appendData(delta);
          if (stick) scrollDown();
        }
      }
      if (!complete && !failure) failure = "The connection ended before the answer was complete.";
    }
  } catch (e) {
    if (e.name !== "AbortError") failure = `The request failed: ${e.message}`;
  }
  setRunning(null);
  reply.removeAttribute("aria-busy");

  const answer = out.data;
  const stats = document.createElement("p");
  stats.className = "stats";
  if (controller.signal.aborted) {
    reply.dataset.state = "stopped";
    stats.textContent = `Stopped after ${fmt((performance.now() - t.start) / 1000, 1)} s` +
      " (the server reports usage only for a finished answer)";
  } else if (failure) {
    reply.dataset.state = "error";
  } else {
    reply.dataset.state = "done";
    if (usage) {
      t.end = performance.now();
      stats.textContent = statsText(usage, t);
      stats.dataset.completionTokens = usage.completion_tokens;
      stats.dataset.promptTokens = usage.prompt_tokens;
      stats.dataset.cachedTokens = usage.prompt_tokens_details?.cached_tokens ?? 0;
    }
  }
  if (stats.textContent) reply.append(stats);
  if (failure) {
    if (!answer) reply.remove();
    addMessage("error", "Error", failure);
    ui.status.textContent = "Error";
  } else {
    ui.status.textContent = controller.signal.aborted ? "Stopped" : "Done";
  }
  if (answer || reply.dataset.state === "done") {
    history.push({ role: "assistant", content: answer });
  } else {
    // a turn with no answer (refused, or stopped before the first token) is not part of the
    // conversation: its text goes back into the box, to send again
    history.pop();
    if (!ui.prompt.value) ui.prompt.value = text;
  }
}

// --- wiring ---

ui.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  send();
});

ui.prompt.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
    e.preventDefault();
    send();
  } else if (e.key === "Escape" && running) {
    running.abort();
  }
});

ui.stop.addEventListener("click", () => running?.abort());

ui.newChat.addEventListener("click", () => {
  if (running) return;
  history = [];
  showEmpty();
  ui.status.textContent = "New chat";
  ui.prompt.focus();
});

ui.settings.addEventListener("input", () => saveJSON(localStorage, SETTINGS_KEY, settingsFromForm()));
ui.settings.addEventListener("submit", (e) => e.preventDefault());
ui.reset.addEventListener("click", () => {
  showSettings(DEFAULTS);
  saveJSON(localStorage, SETTINGS_KEY, settingsFromForm());
});

ui.keyForm.addEventListener("submit", (e) => {
  e.preventDefault();
  saveJSON(sessionStorage, API_KEY_KEY, ui.key.value.trim());
  ui.key.value = "";
  ui.status.textContent = "API key set";
  loadModel();
  ui.prompt.focus();
});

showSettings(Object.assign({}, DEFAULTS, loadJSON(localStorage, SETTINGS_KEY, {})));
showEmpty();
loadModel();
ui.prompt.focus();
