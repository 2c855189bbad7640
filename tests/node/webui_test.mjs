// webui_test: the chat page (GET /) in a real headless Chromium, driven by puppeteer-core.
// Started by tests/test_webui.py with LS_PORT (a server without a key, --ctx-size 32768,
// --max-tokens-limit 32000,
// one slot), LS_KEY_PORT and LS_API_KEY (a server that wants that key), LS_ALIAS (the model
// name both serve), LS_CHROMIUM and LS_SCREENSHOT (where the picture of a finished
// conversation goes). Every wait has a deadline and waits for a condition, never for time.
// Prints "ok"/"FAIL" per check and exits 1 on the first failure.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import puppeteer from "puppeteer-core";

const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return v;
};
const base = `http://127.0.0.1:${env("LS_PORT")}`;
const keyBase = `http://127.0.0.1:${env("LS_KEY_PORT")}`;
const apiKey = env("LS_API_KEY");
const alias = env("LS_ALIAS");
const screenshot = env("LS_SCREENSHOT");
const WAIT_MS = 60_000; // turns a hang into a failure; sanitizer builds are slow

// the whole run, however it goes
const overall = setTimeout(() => {
  console.log("FAIL: the browser test ran past 150 s");
  process.exit(1);
}, 150_000);

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "ls-webui-"));
const browser = await puppeteer.launch({
  executablePath: process.env.LS_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  userDataDir: profile, // a fresh profile: no stored settings from an earlier run
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  protocolTimeout: WAIT_MS,
});

// Collects what must never happen on a page: script errors, dialogs (an injected alert),
// Content-Security-Policy violations, requests that leave the server.
async function openPage(origin) {
  const page = await browser.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const bad = { errors: [], dialogs: [], foreign: [] };
  page.on("pageerror", (e) => bad.errors.push(String(e)));
  page.on("dialog", async (d) => {
    bad.dialogs.push(d.message());
    await d.dismiss();
  });
  page.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith(origin + "/") && !u.startsWith("data:")) bad.foreign.push(u);
  });
  await page.evaluateOnNewDocument(() => {
    window.__csp = [];
    document.addEventListener("securitypolicyviolation", (e) =>
      window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`),
    );
  });
  return { page, bad };
}

async function checkClean({ page, bad }) {
  assert.deepEqual(bad.errors, [], "script errors");
  assert.deepEqual(bad.dialogs, [], "dialogs opened");
  assert.deepEqual(bad.foreign, [], "requests to anywhere but the server");
  assert.deepEqual(await page.evaluate(() => window.__csp), [], "CSP violations");
}

let failed = false;
async function check(name, fn) {
  if (failed) return;
  const t0 = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    failed = true;
  }
}

const text = (page, sel) => page.$eval(sel, (el) => el.textContent);

async function setSetting(page, id, value) {
  await page.$eval(
    id,
    (el, v) => {
      el.value = v;
      el.dispatchEvent(new Event("input", { bubbles: true }));
    },
    value,
  );
}

// Types a message and sends it with Enter.
async function sendMessage(page, msg) {
  await page.focus("#prompt");
  await page.$eval("#prompt", (el) => (el.value = ""));
  await page.keyboard.type(msg);
  await page.keyboard.press("Enter");
}

const lastAssistant = `#log .msg.assistant:last-of-type`;

// Waits until no answer is streaming (send() marks its answer "streaming" before its first
// await, so before the key press that started it has returned); returns the newest answer's
// state: done, stopped or error (undefined when a refused request left no answer).
async function waitAnswer(page) {
  await page.waitForFunction(() => !document.querySelector("#log .msg[data-state=streaming]"),
    { polling: 20 });
  return page.evaluate(() => [...document.querySelectorAll("#log .msg.assistant")].pop()?.dataset.state);
}

async function metrics(origin) {
  const r = await fetch(origin + "/metrics");
  assert.equal(r.status, 200);
  const out = {};
  for (const line of (await r.text()).split("\n")) {
    const m = /^([a-z_]+) ([0-9.e+-]+)$/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

try {
  const A = await openPage(base);
  const page = A.page;

  await check("the page loads with its CSP and shows the model name", async () => {
    const res = await page.goto(base + "/", { waitUntil: "load" });
    assert.equal(res.status(), 200);
    const csp = res.headers()["content-security-policy"];
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/);
    await page.waitForFunction((a) => document.getElementById("model-name").textContent === a, {}, alias);
  });

  await check("usable at phone width and labelled for a screen reader", async () => {
    await page.setViewport({ width: 360, height: 740 });
    const fit = await page.evaluate(() => {
      const w = document.documentElement.clientWidth;
      const inView = (id) => {
        const r = document.getElementById(id).getBoundingClientRect();
        return r.left >= 0 && r.right <= w && r.bottom <= window.innerHeight && r.width > 0;
      };
      return {
        overflow: document.documentElement.scrollWidth - w,
        prompt: inView("prompt"),
        send: inView("send"),
        stop: inView("stop"),
      };
    });
    assert.deepEqual(fit, { overflow: 0, prompt: true, send: true, stop: true });
    const a11y = await page.evaluate(() => ({
      unlabelled: [...document.querySelectorAll("input, textarea, select")]
        .filter((el) => !el.labels || el.labels.length === 0)
        .map((el) => el.id),
      log: document.getElementById("log").getAttribute("role"),
      status: document.getElementById("status").getAttribute("role"),
      lang: document.documentElement.lang,
    }));
    assert.deepEqual(a11y, { unlabelled: [], log: "log", status: "status", lang: "en" });
    await page.setViewport({ width: 820, height: 620 });
  });

  await check("settings are kept in localStorage across a reload", async () => {
    await page.click("#settings summary");
    await setSetting(page, "#set-temperature", "0");
    await setSetting(page, "#set-seed", "7");
    await setSetting(page, "#set-max-tokens", "40");
    await page.reload({ waitUntil: "load" });
    const v = await page.evaluate(() => ({
      t: document.getElementById("set-temperature").value,
      s: document.getElementById("set-seed").value,
      m: document.getElementById("set-max-tokens").value,
    }));
    assert.deepEqual(v, { t: "0", s: "7", m: "40" });
    await page.waitForFunction((a) => document.getElementById("model-name").textContent === a, {}, alias);
  });

  await check("Shift+Enter adds a line, Enter sends", async () => {
    await page.focus("#prompt");
    await page.keyboard.type("a");
    await page.keyboard.down("Shift");
    await page.keyboard.press("Enter");
    await page.keyboard.up("Shift");
    await page.keyboard.type("b");
    assert.equal(await page.$eval("#prompt", (el) => el.value), "a\nb");
    assert.equal(await page.$$eval("#log .msg", (m) => m.length), 0);
    await page.$eval("#prompt", (el) => (el.value = ""));
  });

  let first = null;
  await check("an answer streams in, with tokens and tokens/s", async () => {
    await sendMessage(page, "Who made the heaven?");
    assert.equal(await waitAnswer(page), "done");
    first = await page.$eval(lastAssistant, (m) => ({
      text: m.querySelector(".text").textContent,
      stats: m.querySelector(".stats").textContent,
      completion: Number(m.querySelector(".stats").dataset.completionTokens),
      prompt: Number(m.querySelector(".stats").dataset.promptTokens),
    }));
    assert.ok(first.text.length > 0, "an empty answer");
    assert.ok(first.completion > 0 && first.completion <= 40, `completion tokens ${first.completion}`);
    assert.match(first.stats, /\d+ tokens, [\d.,]+ tokens\/s/);
    assert.equal(await text(page, "#log .msg.user .text"), "Who made the heaven?");
  });

  await check("a second turn carries the first (its prompt is cached)", async () => {
    await sendMessage(page, "And who made the earth?");
    assert.equal(await waitAnswer(page), "done");
    const s = await page.$eval(lastAssistant, (m) => ({ ...m.querySelector(".stats").dataset }));
    assert.ok(Number(s.cachedTokens) > 0, `cached_tokens ${s.cachedTokens}`);
    assert.ok(Number(s.promptTokens) > first.prompt + first.completion,
      `the second prompt (${s.promptTokens} tokens) holds the first turn (${first.prompt} + ${first.completion})`);
    assert.equal(await page.$$eval("#log .msg.assistant", (m) => m.length), 2);
  });

  await check("a screenshot of the finished conversation", async () => {
    await page.screenshot({ path: screenshot });
    assert.ok(fs.statSync(screenshot).size > 1000);
  });

  await check("the answer grows as it streams, and Stop ends it and frees the slot", async () => {
    await page.click("#new-chat");
    await setSetting(page, "#set-max-tokens", "30000");
    const before = await metrics(base);
    // every length the answer's text takes, as the page shows it
    await page.evaluate(() => {
      window.__lengths = [];
      new MutationObserver(() => {
        const m = [...document.querySelectorAll("#log .msg.assistant")].pop();
        if (m) window.__lengths.push(m.querySelector(".text").textContent.length);
      }).observe(document.getElementById("log"), { subtree: true, childList: true, characterData: true });
    });
    await sendMessage(page, "In the beginning");
    await page.waitForFunction(
      () => new Set(window.__lengths.filter((n) => n > 0)).size >= 5 && window.__lengths.at(-1) >= 200,
      { polling: 10 },
    );
    assert.equal(await page.$eval(lastAssistant, (m) => m.dataset.state), "streaming");
    assert.equal(await page.$eval("#stop", (b) => b.disabled), false);
    await page.click("#stop");
    assert.equal(await waitAnswer(page), "stopped");
    const lengths = await page.evaluate(() => window.__lengths);
    for (let i = 1; i < lengths.length; i++) assert.ok(lengths[i] >= lengths[i - 1], "the text only grows");
    assert.deepEqual(await page.evaluate(() => [
      document.getElementById("send").disabled, document.getElementById("stop").disabled]), [false, true]);
    // the server frees the slot once it sees the client gone: poll /metrics with a deadline
    const deadline = Date.now() + WAIT_MS;
    let m = await metrics(base);
    while (m.llamaserve_slots_busy !== 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20)); // paces the polls, synchronises nothing
      m = await metrics(base);
    }
    assert.equal(m.llamaserve_slots_busy, 0, "busy slots after Stop");
    const generated = m.llamaserve_generated_tokens_total - before.llamaserve_generated_tokens_total;
    assert.ok(generated < 30000, `the stopped answer ran to ${generated} of 30000 tokens`);
    console.log(`     stopped after ${generated} tokens; ${lengths.length} text lengths seen`);
  });

  await check("a server error shows as a message", async () => {
    await page.click("#new-chat");
    await setSetting(page, "#set-max-tokens", "40000"); // over --max-tokens-limit (32000)
    await sendMessage(page, "Too long");
    await page.waitForSelector("#log .msg.error[role=alert]");
    assert.match(await text(page, "#log .msg.error .text"), /at most 32000/);
    assert.equal(await page.$$eval("#log .msg.assistant", (m) => m.length), 0);
    assert.equal(await page.$eval("#prompt", (el) => el.value), "Too long", "the refused text returns to the box");
    await setSetting(page, "#set-max-tokens", "20");
  });

  await check("a prompt with markup comes back as text", async () => {
    await page.click("#new-chat");
    const evil = `<script>alert(1)</script><img src=x onerror="alert(2)"><b>bold</b>`;
    await sendMessage(page, evil);
    assert.equal(await waitAnswer(page), "done");
    const r = await page.evaluate(() => {
      const u = document.querySelector("#log .msg.user .text");
      return {
        text: u.textContent,
        children: u.children.length,
        scripts: document.scripts.length,
        imgs: document.images.length,
        bolds: document.querySelectorAll("#log b").length,
      };
    });
    assert.deepEqual(r, { text: evil, children: 0, scripts: 1, imgs: 0, bolds: 0 });
    await checkClean(A);
  });

  await check("a server with a key: the key field shows on 401, and the key works", async () => {
    const B = await openPage(keyBase);
    const p = B.page;
    await p.goto(keyBase + "/", { waitUntil: "load" });
    await p.waitForSelector("#key-form:not([hidden])");
    assert.equal(await text(p, "#model-name"), "needs an API key");
    await sendMessage(p, "Who made the heaven?");
    await p.waitForSelector("#log .msg.error[role=alert]");
    assert.match(await text(p, "#log .msg.error .text"), /API key/);
    await p.focus("#api-key");
    await p.keyboard.type(apiKey);
    await p.keyboard.press("Enter");
    await p.waitForFunction((a) => document.getElementById("model-name").textContent === a, {}, alias);
    await setSetting(p, "#set-max-tokens", "20"); // another origin: its own settings
    assert.equal(await p.$eval("#key-form", (f) => f.hidden), true);
    // the refused message went back into the box: Enter sends it again, now with the key
    await p.focus("#prompt");
    assert.equal(await p.$eval("#prompt", (el) => el.value), "Who made the heaven?");
    await p.keyboard.press("Enter");
    assert.equal(await waitAnswer(p), "done");
    await checkClean(B);
    await p.close();
  });
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
  clearTimeout(overall);
}
process.exitCode = failed ? 1 : 0;
