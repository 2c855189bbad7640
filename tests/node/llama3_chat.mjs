// llama3_chat: a chat through the official `openai` npm client with a Llama-3-shaped model
// (random weights, Meta's Llama 3 vocabulary and chat template). Started by
// tests/test_server_llama3.py with LS_PORT and LS_EOT (the id of <|eot_id|>). Checks that a
// chat and its stream agree, and that <|eot_id|> (forced with logit_bias) ends the answer with
// finish_reason "stop" and never shows in the text. Exits 1 on the first failure.
import assert from "node:assert/strict";
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: `http://127.0.0.1:${process.env.LS_PORT}/v1`,
  apiKey: "unused",
  maxRetries: 0,
  timeout: 120_000,
});
const messages = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Name one colour." },
];

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    process.exitCode = 1;
  }
}

await check("a chat and its stream give the same text", async () => {
  const r = await client.chat.completions.create({
    model: "llama3", messages, max_tokens: 12, temperature: 0, seed: 1,
  });
  assert.equal(r.object, "chat.completion");
  assert.ok(["stop", "length"].includes(r.choices[0].finish_reason));
  assert.equal(typeof r.choices[0].message.content, "string");
  assert.ok(r.usage.prompt_tokens > 10, `prompt tokens ${r.usage.prompt_tokens}`);
  let text = "";
  const stream = await client.chat.completions.create({
    model: "llama3", messages, max_tokens: 12, temperature: 0, seed: 1, stream: true,
  });
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  assert.equal(text, r.choices[0].message.content);
});

await check("<|eot_id|> ends the answer and is not shown", async () => {
  const r = await client.chat.completions.create({
    model: "llama3", messages, max_tokens: 12, temperature: 0,
    logit_bias: { [process.env.LS_EOT]: 100 },
  });
  assert.equal(r.choices[0].finish_reason, "stop");
  assert.equal(r.choices[0].message.content, "");
  assert.equal(r.usage.completion_tokens, 0);
});
