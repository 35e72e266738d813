// The official openai Node SDK, unchanged, through the sidecar in front of the
// built-in mock upstream, serving the flags the Python suite uses too
// (tests/fixtures/flags.yaml). Nothing leaves loopback.
//
// Both processes listen on port 0 and the suite reads the addresses they got
// from their startup log lines: no port is picked, closed and hoped free.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createHash } from "node:crypto";
import { createInterface } from "node:readline";
import path from "node:path";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const binDir = process.env.AIFLAGS_BIN_DIR ?? path.join(root, "target", "debug");
const sidecarBin = path.join(binDir, "aiflags-sidecar");
const devBin = path.join(binDir, "aiflags-dev");
const flagsFile = path.join(root, "tests", "fixtures", "flags.yaml");

// Only ever reached when something hangs.
const PATIENCE_MS = 60_000;

/** Starts `bin`, reads its log (stderr) line by line, and resolves with the
 * `key=value` fields of the first line that contains `message`. */
function startAndWaitFor(bin, args, message) {
  const child = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
  children.push(child);
  const tail = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${path.basename(bin)} did not log "${message}" within ${PATIENCE_MS} ms:\n${tail.join("\n")}`)),
      PATIENCE_MS,
    );
    // The reader keeps draining the pipe after the line, so the child never blocks on it.
    createInterface({ input: child.stderr }).on("line", (line) => {
      tail.push(line);
      if (tail.length > 20) tail.shift();
      if (line.includes(message)) {
        clearTimeout(timer);
        resolve(Object.fromEntries([...line.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1], m[2]])));
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${path.basename(bin)} exited with ${code} before logging "${message}":\n${tail.join("\n")}`));
    });
  });
}

async function waitUntilReady(url) {
  const deadline = Date.now() + PATIENCE_MS;
  for (;;) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not serving yet
    }
    if (Date.now() > deadline) throw new Error(`${url} not ready within ${PATIENCE_MS} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const children = [];
let client;
let sidecarBase;

before(async () => {
  for (const bin of [sidecarBin, devBin]) {
    assert.ok(existsSync(bin), `${bin} not found: run cargo build -p aiflags-sidecar -p aiflags-devtools`);
  }
  const mock = await startAndWaitFor(devBin, ["mock-upstream", "--listen", "127.0.0.1:0"], "mock upstream listening");
  const upstream = `http://${mock.addr}`;
  const sidecar = await startAndWaitFor(
    sidecarBin,
    ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--flags", flagsFile,
     "--openai-upstream", upstream, "--anthropic-upstream", upstream],
    "aiflags sidecar listening",
  );
  await waitUntilReady(`http://${sidecar.admin_addr}/readyz`);
  sidecarBase = `http://${sidecar.addr}`;
  client = new OpenAI({ baseURL: `${sidecarBase}/v1`, apiKey: "sk-node-test", maxRetries: 0, timeout: 30_000 });
});

after(async () => {
  const exits = children
    .filter((child) => child.exitCode === null && child.signalCode === null)
    .map((child) => new Promise((resolve) => child.once("exit", resolve)));
  for (const child of children) child.kill("SIGTERM");
  await Promise.all(exits);
});

const messages = [{ role: "user", content: "Say hi — ünïcødé 🌍" }];

test("chat plain: the app sees the variant's model and the aiflags headers", async () => {
  const { data, response } = await client.chat.completions.create({ model: "gpt-4o-mini", messages }).withResponse();
  assert.equal(response.headers.get("x-aiflags-flag"), "chat-model");
  assert.equal(response.headers.get("x-aiflags-variant"), "candidate");
  assert.equal(response.headers.get("x-aiflags-model"), "gpt-4.1-mini");
  assert.equal(response.headers.get("x-aiflags-attempts"), "1");
  assert.equal(response.headers.get("x-mock-temperature"), "0.2", "the variant's params were not applied");
  assert.equal(data.model, "gpt-4.1-mini");
  assert.match(data.choices[0].message.content, /gpt-4\.1-mini/);
});

test("chat streaming arrives chunk by chunk", async () => {
  const { data: stream, response } = await client.chat.completions
    .create({ model: "gpt-4o-mini", messages, stream: true })
    .withResponse();
  assert.equal(response.headers.get("x-aiflags-model"), "gpt-4.1-mini");
  let text = "";
  let chunks = 0;
  for await (const chunk of stream) {
    chunks += 1;
    assert.equal(chunk.usage ?? null, null, "the proxy's usage chunk leaked");
    text += chunk.choices[0]?.delta?.content ?? "";
  }
  assert.ok(chunks > 3);
  assert.match(text, /Hello from gpt-4\.1-mini/);
});

test("responses plain and streaming pass through untouched when no flag matches", async () => {
  const { data, response } = await client.responses.create({ model: "gpt-4o", input: "hi" }).withResponse();
  assert.equal(response.headers.get("x-aiflags-flag"), null);
  assert.match(data.output_text, /Hello from gpt-4o/);
  const events = [];
  for await (const event of await client.responses.create({ model: "gpt-4o", input: "hi", stream: true })) {
    events.push(event.type);
  }
  assert.equal(events.at(-1), "response.completed");
});

test("embeddings get the variant's model", async () => {
  const { data, response } = await client.embeddings
    .create({ model: "text-embedding-3-small", input: "hello" })
    .withResponse();
  assert.equal(response.headers.get("x-aiflags-model"), "text-embedding-3-large");
  assert.equal(data.model, "text-embedding-3-large");
  assert.equal(data.data[0].embedding.length, 4);
});

// Every test below gives up rather than hang.
const bounded = { timeout: 30_000 };

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

/** JSON as the sidecar re-serialises a rewritten body: serde_json's compact
 * form, keys sorted, non-ASCII as raw UTF-8 (which JSON.stringify also does). */
/** The bytes a flag forwards: the SDK's own JSON with only the members the
 * variant changes written anew, in place (the sidecar splices, never re-encodes). */
function forwardedBytes(value) {
  return Buffer.from(JSON.stringify(value), "utf8");
}

/** An Anthropic-shaped request, as the Anthropic SDK sends it. */
const postMessages = (body) =>
  fetch(`${sidecarBase}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": "sk-ant-node", "anthropic-version": "2023-06-01" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });

/** `[{event, data}]` of an SSE body. */
function sseEvents(text) {
  return text
    .split("\n\n")
    .filter((block) => block.trim())
    .map((block) => {
      const field = (name) =>
        block
          .split("\n")
          .filter((line) => line.startsWith(`${name}:`))
          .map((line) => line.slice(name.length + 1).trim())
          .join("\n");
      return { event: field("event"), data: JSON.parse(field("data")) };
    });
}

test("responses through a flag: the app sees the variant's model and the aiflags headers", bounded, async () => {
  const { data, response } = await client.responses.create({ model: "gpt-4.1", input: "hi" }).withResponse();
  assert.equal(response.headers.get("x-aiflags-flag"), "responses-model");
  assert.equal(response.headers.get("x-aiflags-variant"), "next");
  assert.equal(response.headers.get("x-aiflags-model"), "gpt-5-mini");
  assert.equal(response.headers.get("x-aiflags-attempts"), "1");
  assert.equal(response.headers.get("x-mock-received-model"), "gpt-5-mini");
  assert.equal(response.headers.get("x-mock-received-path"), "/v1/responses");
  assert.equal(data.model, "gpt-5-mini");
  assert.match(data.output_text, /Hello from gpt-5-mini/);

  const { data: stream, response: streamed } = await client.responses
    .create({ model: "gpt-4.1", input: "hi", stream: true })
    .withResponse();
  assert.equal(streamed.headers.get("x-aiflags-model"), "gpt-5-mini");
  const events = [];
  for await (const event of stream) events.push(event);
  assert.equal(events[0].type, "response.created");
  assert.equal(events.at(-1).type, "response.completed");
  assert.equal(events.at(-1).response.model, "gpt-5-mini");
  assert.ok(events.at(-1).response.usage.output_tokens > 0);
});

test("anthropic messages via fetch: the model is rewritten, the app's key passes through", bounded, async () => {
  const body = { model: "claude-3-5-haiku-latest", max_tokens: 64, messages: [{ role: "user", content: "Say hi" }] };
  const response = await postMessages(body);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("x-aiflags-flag"), "claude-model");
  assert.equal(response.headers.get("x-aiflags-model"), "claude-sonnet-4-5");
  assert.equal(response.headers.get("x-mock-api-key"), "sk-ant-node");
  assert.equal(response.headers.get("x-mock-received-path"), "/v1/messages");
  const message = await response.json();
  assert.equal(message.type, "message");
  assert.equal(message.model, "claude-sonnet-4-5");
  assert.match(message.content[0].text, /^Hello from claude-sonnet-4-5/);
});

test("anthropic messages streaming: message_start … message_stop with the variant's model", bounded, async () => {
  const body = {
    model: "claude-3-5-haiku-latest", max_tokens: 64, stream: true,
    messages: [{ role: "user", content: "Say hi" }],
  };
  const response = await postMessages(body);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type"), /^text\/event-stream/);
  assert.equal(response.headers.get("x-aiflags-model"), "claude-sonnet-4-5");
  const events = sseEvents(await response.text());
  assert.equal(events[0].event, "message_start");
  assert.equal(events[0].data.message.model, "claude-sonnet-4-5");
  assert.equal(events.at(-1).event, "message_stop");
  assert.deepEqual(events.at(-1).data, { type: "message_stop" });
  for (const { event, data } of events) assert.equal(data.type, event, "event name and data type disagree");
  const text = events
    .filter((e) => e.event === "content_block_delta")
    .map((e) => e.data.delta.text)
    .join("");
  assert.match(text, /^Hello from claude-sonnet-4-5/);
});

test("a 1 MB prompt goes through the flag whole", bounded, async () => {
  const prompt = "word ".repeat(200_000);
  const sent = { messages: [{ role: "user", content: prompt }], model: "gpt-4o-mini" };
  const { data, response } = await client.chat.completions.create(sent).withResponse();
  assert.equal(data.model, "gpt-4.1-mini");
  assert.ok(data.usage.prompt_tokens > 250_000, `prompt_tokens ${data.usage.prompt_tokens}`);
  const expected = forwardedBytes({ ...sent, model: "gpt-4.1-mini", temperature: 0.2 });
  assert.ok(expected.length > 1_000_000);
  assert.equal(response.headers.get("x-mock-body-bytes"), String(expected.length));
  assert.equal(response.headers.get("x-mock-body-sha256"), sha256(expected));
});

const nonAscii = 'Grüße aus Köln — 日本語のテキスト 🌍 \u0000\n"quoted"';

test("non-ASCII content reaches the upstream intact through a flag", bounded, async () => {
  const sent = { messages: [{ role: "user", content: nonAscii }], model: "gpt-4o-mini", user: "ünïcødé-user" };
  const { data, response } = await client.chat.completions.create(sent).withResponse();
  assert.equal(data.model, "gpt-4.1-mini");
  // The app's body with the variant's model and params, every character unchanged.
  const expected = forwardedBytes({ ...sent, model: "gpt-4.1-mini", temperature: 0.2 });
  assert.equal(response.headers.get("x-mock-body-bytes"), String(expected.length));
  assert.equal(response.headers.get("x-mock-body-sha256"), sha256(expected));
});

test("non-ASCII content passes through byte for byte when no flag matches", bounded, async () => {
  // Spacing and key order no encoder would choose: a pass-through must not re-encode.
  const body = Buffer.from(
    `{ "user":"ünïcødé",  "model" : "gpt-3.5-turbo",\n "messages":[{"role":"user","content":${JSON.stringify(nonAscii)}}]}`,
    "utf8",
  );
  const response = await fetch(`${sidecarBase}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
    signal: AbortSignal.timeout(30_000),
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("x-aiflags-flag"), null);
  assert.equal(response.headers.get("x-mock-body-bytes"), String(body.length));
  assert.equal(response.headers.get("x-mock-body-sha256"), sha256(body));
  assert.equal((await response.json()).model, "gpt-3.5-turbo");
});
