// openai_client: the official `openai` npm client against a running llamaserve.
// Started by tests/test_server_node.py with LS_PORT (the server's port) and LS_API_KEY set.
// Checks that streaming chat and completions parse in the SDK and concatenate to the
// non-streamed text, that models.list works, and that a bad request surfaces as the SDK's
// BadRequestError with the server's error fields, and that response_format json_schema gives
// parseable objects that follow the schema (more of that, and tool calls, with other clients
// too: structured_clients.mjs), that responses.create (the Responses API), streamed and not,
// gives the chat route's text, and that embeddings.create gives the same vectors as floats, as
// base64 and as the SDK's default (base64 it decodes). Exits 1 on the first failure.
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
  // (models.list needs no key: /v1/models is public by default, for model pickers)
  await assert.rejects(
    bad.completions.create({ model: "m", prompt: "a", max_tokens: 1 }),
    (e) => e instanceof OpenAI.AuthenticationError,
  );
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


// The Responses API: the same prompt as a chat request, so the same text (greedy).
const QUESTION = "Who made the heaven?";
const chatText = async (max_tokens) =>
  (
    await client.chat.completions.create({
      model: "m",
      messages: [
        { role: "system", content: "Answer briefly." },
        { role: "user", content: QUESTION },
      ],
      max_tokens,
      temperature: 0,
    })
  ).choices[0].message.content;

await check("responses.create gives the chat route's text", async () => {
  const r = await client.responses.create({
    model: "gpt-4.1-mini",
    instructions: "Answer briefly.",
    input: [{ role: "user", content: [{ type: "input_text", text: QUESTION }] }],
    max_output_tokens: 12,
    temperature: 0,
    store: false,
  });
  assert.equal(r.object, "response");
  assert.ok(r.id.startsWith("resp_"), r.id);
  assert.equal(r.model, "kjv-node");
  assert.equal(r.status, "incomplete");
  assert.deepEqual(r.incomplete_details, { reason: "max_output_tokens" });
  assert.equal(r.output_text, await chatText(12)); // output_text: the SDK joins output[]
  assert.equal(r.output[0].content[0].text, r.output_text);
  assert.equal(r.usage.output_tokens, 12);
  assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
});

await check("responses.create streaming events add up", async () => {
  const stream = await client.responses.create({
    model: "m",
    instructions: "Answer briefly.",
    input: QUESTION,
    max_output_tokens: 10,
    temperature: 0,
    stream: true,
  });
  const types = [];
  let text = "";
  let last = null;
  for await (const ev of stream) {
    assert.equal(ev.sequence_number, types.length);
    types.push(ev.type);
    if (ev.type === "response.output_text.delta") text += ev.delta;
    last = ev;
  }
  assert.equal(types[0], "response.created");
  assert.equal(last.type, "response.incomplete");
  assert.equal(text, await chatText(10));
  assert.equal(last.response.output[0].content[0].text, text);
});

await check("responses.stream helper: final response", async () => {
  const runner = client.responses.stream({
    model: "m",
    instructions: "Answer briefly.",
    input: QUESTION,
    max_output_tokens: 8,
    temperature: 0,
  });
  let deltas = "";
  runner.on("response.output_text.delta", (ev) => (deltas += ev.delta));
  const final = await runner.finalResponse();
  assert.equal(final.output_text, await chatText(8));
  assert.equal(deltas, final.output_text);
});

await check("responses: unsupported input is a BadRequestError naming it", async () => {
  await assert.rejects(
    client.responses.create({
      model: "m",
      input: [{ role: "user", content: [{ type: "input_image", image_url: "https://example.com/a.png" }] }],
    }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === "input[0].content[0].type",
  );
  await assert.rejects(
    client.responses.create({ model: "m", input: "hi", store: true }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === "store",
  );
});

await check("embeddings.create: a string and an array, float and base64", async () => {
  const texts = ["In the beginning", "Jesus wept.", "And the LORD said unto Moses"];
  const floats = await client.embeddings.create({
    model: "m",
    input: texts,
    encoding_format: "float",
  });
  assert.equal(floats.object, "list");
  assert.equal(floats.model, "kjv-node");
  assert.deepEqual(floats.data.map((d) => d.index), [0, 1, 2]);
  assert.ok(floats.usage.prompt_tokens > 3 && floats.usage.total_tokens === floats.usage.prompt_tokens);
  for (const d of floats.data) {
    assert.equal(d.object, "embedding");
    assert.equal(d.embedding.length, 256);
    const norm = Math.hypot(...d.embedding);
    assert.ok(Math.abs(norm - 1) < 1e-5, String(norm));
  }
  // the JSON numbers have the 9 digits that give each float32 back exactly
  const f32 = floats.data.map((d) => d.embedding.map(Math.fround));
  // without encoding_format the SDK asks for base64 and decodes it: the same numbers
  const dflt = await client.embeddings.create({ model: "m", input: texts[1] });
  assert.equal(dflt.data.length, 1);
  assert.deepEqual(dflt.data[0].embedding, f32[1]);
  // asked for base64 itself, it gets the string: little-endian float32 bytes
  const b64 = await client.embeddings.create({ model: "m", input: texts, encoding_format: "base64" });
  for (const [i, d] of b64.data.entries()) {
    assert.equal(typeof d.embedding, "string");
    const buf = Buffer.from(d.embedding, "base64");
    const got = Array.from({ length: buf.length / 4 }, (_, k) => buf.readFloatLE(4 * k));
    assert.deepEqual(got, f32[i]);
  }
  await assert.rejects(
    client.embeddings.create({ model: "m", input: "a", dimensions: 16 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === "dimensions",
  );
});
