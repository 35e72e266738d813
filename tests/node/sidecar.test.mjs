// The official openai Node SDK, unchanged, through the sidecar in front of the
// built-in mock upstream. Nothing leaves loopback.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const binDir = process.env.AIFLAGS_BIN_DIR ?? path.join(root, "target", "debug");
const sidecarBin = path.join(binDir, "aiflags-sidecar");

const FLAGS = `
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: chat-model}
spec:
  match: {models: ["gpt-4o-mini"]}
  defaultVariant: stable
  variants:
    - {name: stable, model: gpt-4o-mini}
    - {name: candidate, model: gpt-4.1-mini}
  rollout:
    weights: {stable: 0, candidate: 100}
---
apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: embeddings-model}
spec:
  match: {models: ["text-embedding-3-small"]}
  defaultVariant: large
  variants:
    - {name: large, model: text-embedding-3-large}
  rollout:
    weights: {large: 100}
`;

const freePort = () =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

async function waitUntilReady(url, child) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${child.spawnfile} exited with ${child.exitCode}`);
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} not ready within 30s`);
}

const children = [];
let client;

before(async () => {
  assert.ok(existsSync(sidecarBin), `${sidecarBin} not found: run cargo build --bins`);
  const dir = mkdtempSync(path.join(tmpdir(), "aiflags-node-"));
  const flags = path.join(dir, "flags.yaml");
  writeFileSync(flags, FLAGS);
  const [mockPort, port, adminPort] = [await freePort(), await freePort(), await freePort()];
  const upstream = `http://127.0.0.1:${mockPort}`;
  const mock = spawn(sidecarBin, ["mock-upstream", "--listen", `127.0.0.1:${mockPort}`], { stdio: "ignore" });
  children.push(mock);
  await waitUntilReady(`${upstream}/mock/requests/none`, mock);
  const sidecar = spawn(
    sidecarBin,
    ["--listen", `127.0.0.1:${port}`, "--admin-listen", `127.0.0.1:${adminPort}`, "--flags", flags,
     "--openai-upstream", upstream, "--anthropic-upstream", upstream],
    { stdio: "ignore" },
  );
  children.push(sidecar);
  await waitUntilReady(`http://127.0.0.1:${adminPort}/readyz`, sidecar);
  client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "sk-node-test", maxRetries: 0, timeout: 30_000 });
});

after(() => {
  for (const child of children) child.kill("SIGTERM");
});

const messages = [{ role: "user", content: "Say hi — ünïcødé 🌍" }];

test("chat plain: the app sees the variant's model and the aiflags headers", async () => {
  const { data, response } = await client.chat.completions.create({ model: "gpt-4o-mini", messages }).withResponse();
  assert.equal(response.headers.get("x-aiflags-flag"), "chat-model");
  assert.equal(response.headers.get("x-aiflags-variant"), "candidate");
  assert.equal(response.headers.get("x-aiflags-model"), "gpt-4.1-mini");
  assert.equal(response.headers.get("x-aiflags-attempts"), "1");
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
