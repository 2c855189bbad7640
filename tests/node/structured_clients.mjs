// structured_clients: structured output and tool calls through real clients against a running
// llamaserve on the demo model (started by tests/test_server_node.py with LS_PORT and
// LS_API_KEY set, --ctx-size 2048). The demo model knows nothing of JSON or tools: every answer
// here is valid only because the grammar makes it so. Checks, each with several seeds:
//  - the openai client, response_format json_schema: parseable objects that ajv validates;
//  - LangChain's withStructuredOutput(zod) by json_schema (its default for this model name)
//    and by function calling (tools + a named tool_choice), both parsed by LangChain's zod;
//  - the AI SDK's generateObject, and generateText with Output.object (its successor), through
//    @ai-sdk/openai-compatible with structured outputs;
//  - a tool round trip with tool_choice "required" (openai client, plain and streamed, the
//    stream put together by the SDK itself; and the AI SDK's generateText running the tool):
//    a call, the result sent back as a tool message, a final answer in text.
// Exits 1 on the first failure of each check.
import assert from "node:assert/strict";
import OpenAI from "openai";
import Ajv from "ajv";
import { z } from "zod";
import { ChatOpenAI } from "@langchain/openai";
import { generateObject, generateText, Output, stepCountIs, tool } from "ai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";

const port = process.env.LS_PORT;
if (!port) {
  console.error("LS_PORT is not set");
  process.exit(2);
}
const baseURL = `http://127.0.0.1:${port}/v1`;
const apiKey = process.env.LS_API_KEY || "unused";
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });
const SEEDS = [1, 2, 3];

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    if (e && e.cause) console.log(`     cause: ${e.cause.stack || e.cause}`);
    process.exitCode = 1;
  }
}

const personSchema = {
  type: "object",
  properties: {
    name: { type: "string", minLength: 1, maxLength: 12 },
    age: { type: "integer", minimum: 0, maximum: 150 },
    role: { enum: ["king", "prophet", "scribe"] },
    tags: { type: "array", items: { type: "string", maxLength: 6 }, maxItems: 3 },
    born: { type: "string", format: "date" },
  },
  required: ["name", "age", "role", "tags"],
  additionalProperties: false,
};
const Person = z.object({
  name: z.string().min(1).max(12),
  age: z.number().int().min(0).max(150),
  role: z.enum(["king", "prophet", "scribe"]),
  tags: z.array(z.string().max(6)).max(3),
});

await check("openai: response_format json_schema, validated by ajv", async () => {
  const ajv = new Ajv({ strict: true });
  ajv.addFormat("date", /^\d{4}-\d{2}-\d{2}$/);
  const validate = ajv.compile(personSchema);
  for (const seed of SEEDS) {
    const r = await client.chat.completions.create({
      model: "m",
      messages: [{ role: "user", content: "Describe a person of the Bible." }],
      seed,
      max_tokens: 300,
      response_format: {
        type: "json_schema",
        json_schema: { name: "person", schema: personSchema, strict: true },
      },
    });
    assert.equal(r.choices[0].finish_reason, "stop");
    const o = JSON.parse(r.choices[0].message.content);
    assert.ok(validate(o), JSON.stringify(validate.errors) + " " + JSON.stringify(o));
  }
});

function langchain(seed) {
  return new ChatOpenAI({
    model: "gpt-4o-mini", // any name is served; this one makes LangChain pick json_schema
    apiKey,
    configuration: { baseURL },
    maxRetries: 0,
    seed,
    maxTokens: 1200,
  });
}

await check("langchain: withStructuredOutput(zod), default method (json_schema)", async () => {
  for (const seed of SEEDS) {
    const llm = langchain(seed).withStructuredOutput(Person, { name: "person", includeRaw: true });
    const { raw, parsed } = await llm.invoke("Describe a person of the Bible.");
    assert.deepEqual(raw.tool_calls ?? [], [], "json_schema, not a tool call");
    Person.parse(parsed);
  }
});

await check("langchain: withStructuredOutput(zod), method functionCalling", async () => {
  for (const seed of SEEDS) {
    const llm = langchain(seed).withStructuredOutput(Person, {
      name: "person",
      method: "functionCalling",
      includeRaw: true,
    });
    const { raw, parsed } = await llm.invoke("Describe a person of the Bible.");
    assert.ok(raw.tool_calls.length >= 1, "answered by a tool call");
    assert.equal(raw.tool_calls[0].name, "person");
    Person.parse(parsed);
  }
});

const provider = createOpenAICompatible({
  name: "llamaserve",
  baseURL,
  apiKey,
  supportsStructuredOutputs: true,
});

await check("ai sdk: generateObject(zod)", async () => {
  globalThis.AI_SDK_LOG_WARNINGS = false; // its deprecation notice: the call is still tested
  for (const seed of SEEDS) {
    const { object, finishReason } = await generateObject({
      model: provider("kjv"),
      schema: Person,
      prompt: "Describe a person of the Bible.",
      seed,
      maxRetries: 0,
    });
    assert.equal(finishReason, "stop");
    Person.parse(object);
  }
});

await check("ai sdk: generateText with Output.object(zod)", async () => {
  for (const seed of SEEDS) {
    const { output } = await generateText({
      model: provider("kjv"),
      output: Output.object({ schema: Person }),
      prompt: "Describe a person of the Bible.",
      seed,
      maxRetries: 0,
    });
    Person.parse(output);
  }
});

const weatherTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", minLength: 1, maxLength: 12 },
        unit: { enum: ["celsius", "fahrenheit"] },
      },
      required: ["city", "unit"],
      additionalProperties: false,
    },
  },
};
const weatherCheck = new Ajv().compile(weatherTool.function.parameters);

async function roundTrip(seed, stream) {
  const messages = [{ role: "user", content: "What is the weather in Jericho?" }];
  const req = { model: "m", messages, tools: [weatherTool], tool_choice: "required", seed };
  let first;
  if (stream) {
    // the SDK puts the streamed tool_calls deltas together itself
    first = await client.chat.completions.stream(req).finalChatCompletion();
  } else {
    first = await client.chat.completions.create(req);
  }
  const msg = first.choices[0].message;
  assert.equal(first.choices[0].finish_reason, "tool_calls");
  assert.ok(msg.tool_calls.length >= 1);
  messages.push(msg);
  for (const call of msg.tool_calls) {
    assert.equal(call.type, "function");
    assert.equal(call.function.name, "get_weather");
    assert.match(call.id, /^call_/);
    const args = JSON.parse(call.function.arguments);
    assert.ok(weatherCheck(args), JSON.stringify(args));
    messages.push({ role: "tool", tool_call_id: call.id, content: `Sunny in ${args.city}.` });
  }
  const final = await client.chat.completions.create({
    model: "m",
    messages,
    tools: [weatherTool],
    seed,
    max_tokens: 24,
  });
  const answer = final.choices[0];
  assert.ok(["stop", "length"].includes(answer.finish_reason), answer.finish_reason);
  assert.equal(typeof answer.message.content, "string");
  assert.ok(answer.message.content.length > 0);
  assert.equal(answer.message.tool_calls, undefined);
}

await check("openai: tool round trip, tool_choice required", async () => {
  for (const seed of SEEDS) await roundTrip(seed, false);
});

await check("openai: tool round trip, streamed call", async () => {
  for (const seed of SEEDS) await roundTrip(seed, true);
});

await check("ai sdk: generateText runs a required tool, then answers", async () => {
  for (const seed of SEEDS) {
    const seen = [];
    const result = await generateText({
      model: provider("kjv"),
      prompt: "What is the weather in Jericho?",
      tools: {
        get_weather: tool({
          description: "The weather in a city",
          inputSchema: z.object({ city: z.string().min(1).max(12) }),
          execute: async ({ city }) => {
            seen.push(city);
            return `Sunny in ${city}.`;
          },
        }),
      },
      // a call is forced in the first step only; the second answers in text
      prepareStep: ({ stepNumber }) => ({ toolChoice: stepNumber === 0 ? "required" : "none" }),
      stopWhen: stepCountIs(2),
      maxOutputTokens: 400,
      seed,
      maxRetries: 0,
    });
    assert.ok(seen.length >= 1, "the tool ran");
    assert.equal(result.steps.length, 2);
    assert.equal(result.steps[0].finishReason, "tool-calls");
    assert.ok(["stop", "length"].includes(result.finishReason), result.finishReason);
    assert.ok(result.text.length > 0);
  }
});
