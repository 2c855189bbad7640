// openai_client: the official `openai` npm client against a running llamaserve.
// Started by tests/test_server_node.py with LS_PORT (the server's port) and LS_API_KEY set.
// Checks that streaming chat and completions parse in the SDK and concatenate to the
// non-streamed text, that models.list works, and that a bad request surfaces as the SDK's
// BadRequestError with the server's error fields, and that response_format json_schema gives
// parseable objects that follow the schema (more of that, and tool calls, with other clients
// too: structured_clients.mjs). Exits 1 on the first failure.
import assert from "node:assert/strict";
import OpenAI from "openai";

const port = process.env.LS_PORT;
if (!port) {
  console.error("LS_PORT is not set");
  process.exit(2);
}
const client = new OpenAI({
  baseURL: `http://127.0.0.1:${port}/v1`,
  apiKey: process.env.LS_API_KEY || "unused",
  maxRetries: 0,
  timeout: 120_000,
});

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    process.exitCode = 1;
  }
}

await check("models.list", async () => {
  const models = [];
  for await (const m of client.models.list()) models.push(m);
  assert.equal(models.length, 1);
  assert.equal(models[0].id, "kjv-node");
  assert.equal(models[0].object, "model");
});

await check("chat streaming equals non-streaming", async () => {
  const req = {
    model: "gpt-4o-mini", // any name: the served model answers
    messages: [{ role: "user", content: "Who made the heaven?" }],
    max_tokens: 16,
    temperature: 0,
  };
  const whole = await client.chat.completions.create(req);
  assert.equal(whole.object, "chat.completion");
  assert.equal(whole.model, "kjv-node");
  const text = whole.choices[0].message.content;
  assert.equal(typeof text, "string");
  const stream = await client.chat.completions.create({
    ...req,
    stream: true,
    stream_options: { include_usage: true },
  });
  let got = "";
  let finish = null;
  let usage = null;
  let role = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, "chat.completion.chunk");
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.role) role = c.delta.role;
      if (c.delta.content) got += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(role, "assistant");
  assert.equal(got, text);
  assert.equal(finish, whole.choices[0].finish_reason);
  // cached_tokens depends on what ran before (the prompt cache); the counts may not
  const counts = (u) => [u.prompt_tokens, u.completion_tokens, u.total_tokens];
  assert.deepEqual(counts(usage), counts(whole.usage));
  assert.equal(typeof usage.prompt_tokens_details.cached_tokens, "number");
});

await check("chat stream helper (runner) final content", async () => {
  const runner = client.chat.completions.stream({
    model: "x",
    messages: [{ role: "user", content: "In the beginning" }],
    max_tokens: 10,
    temperature: 0.9,
    seed: 17,
  });
  const final = await runner.finalChatCompletion();
  const whole = await client.chat.completions.create({
    model: "x",
    messages: [{ role: "user", content: "In the beginning" }],
    max_tokens: 10,
    temperature: 0.9,
    seed: 17,
  });
  assert.equal(final.choices[0].message.content, whole.choices[0].message.content);
});

await check("completions streaming equals non-streaming", async () => {
  const req = {
    model: "kjv-node",
    prompt: "In the beginning God",
    max_tokens: 20,
    temperature: 0.9,
    seed: 4,
  };
  const whole = await client.completions.create(req);
  assert.equal(whole.object, "text_completion");
  const stream = await client.completions.create({ ...req, stream: true });
  let got = "";
  let finish = null;
  for await (const chunk of stream) {
    got += chunk.choices[0].text;
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.equal(got, whole.choices[0].text);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.equal(whole.usage.total_tokens, whole.usage.prompt_tokens + whole.usage.completion_tokens);
});

await check("bad request surfaces as BadRequestError", async () => {
  await assert.rejects(
    client.completions.create({ model: "m", prompt: "a", temperature: -1 }),
    (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, `got ${e && e.constructor.name}`);
      assert.equal(e.status, 400);
      assert.equal(e.param, "temperature");
      assert.equal(e.type, "invalid_request_error");
      return true;
    },
  );
});

await check("wrong key surfaces as AuthenticationError", async () => {
  const bad = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "wrong", maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError);
});

await check("response_format json_schema returns parseable, valid objects", async () => {
  const schema = {
    type: "object",
    properties: {
      name: { type: "string", minLength: 1, maxLength: 12 },
      age: { type: "integer", minimum: 0, maximum: 150 },
      role: { enum: ["king", "prophet", "scribe"] },
      tags: { type: "array", items: { type: "string", maxLength: 6 }, maxItems: 3 },
    },
    required: ["name", "age", "role", "tags"],
    additionalProperties: false,
  };
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "Describe a person of the Bible." }],
      max_tokens: 200,
      seed,
      response_format: { type: "json_schema", json_schema: { name: "person", schema, strict: true } },
    });
    assert.equal(r.choices[0].finish_reason, "stop");
    const o = JSON.parse(r.choices[0].message.content);
    assert.deepEqual(Object.keys(o).sort(), ["age", "name", "role", "tags"]);
    assert.ok(typeof o.name === "string" && o.name.length >= 1 && [...o.name].length <= 12, o.name);
    assert.ok(Number.isInteger(o.age) && o.age >= 0 && o.age <= 150, String(o.age));
    assert.ok(["king", "prophet", "scribe"].includes(o.role), o.role);
    assert.ok(Array.isArray(o.tags) && o.tags.length <= 3);
    for (const t of o.tags) assert.ok(typeof t === "string" && [...t].length <= 6, t);
  }
});

await check("response_format json_schema streams a JSON object", async () => {
  const stream = await client.chat.completions.create({
    model: "m",
    messages: [{ role: "user", content: "JSON" }],
    max_tokens: 200,
    seed: 4,
    stream: true,
    response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] } } },
  });
  let got = "";
  for await (const chunk of stream) got += chunk.choices[0]?.delta?.content ?? "";
  assert.equal(typeof JSON.parse(got).ok, "boolean");
});
