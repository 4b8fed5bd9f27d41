// The official `openai` npm package as a client of a running mtai gateway.
// scripts/test-node.sh starts the gateway and sets:
//   MTAI_URL  the gateway's root URL, e.g. http://127.0.0.1:41234 (a trailing /v1 is accepted)
//   MTAI_KEY  an API key the gateway accepts
// The built-in mock models (mock-gpt, mock-embed) answer; nothing leaves the machine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const url = process.env.MTAI_URL;
const key = process.env.MTAI_KEY;
if (!url || !key) {
  throw new Error('MTAI_URL and MTAI_KEY must be set (scripts/test-node.sh sets them)');
}
const baseURL = url.replace(/\/+$/, '').replace(/\/v1$/, '') + '/v1';

// seen records what went over the wire, to check what the SDK sent and got raw.
function client(apiKey = key, seen = []) {
  return new OpenAI({
    baseURL,
    apiKey,
    maxRetries: 0,
    timeout: 20_000,
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      seen.push({ url: String(input), body: init?.body ? JSON.parse(init.body) : undefined, response: res.clone() });
      return res;
    },
  });
}

const messages = [{ role: 'user', content: 'Hello from node!' }];

test('chat completion', async () => {
  const c = await client().chat.completions.create({ model: 'mock-gpt', messages });
  assert.equal(c.object, 'chat.completion');
  assert.equal(c.choices.length, 1);
  assert.equal(c.choices[0].message.role, 'assistant');
  assert.ok(c.choices[0].message.content.length > 0, 'empty content');
  assert.equal(c.choices[0].finish_reason, 'stop');
  assert.equal(c.usage.prompt_tokens + c.usage.completion_tokens, c.usage.total_tokens);
  assert.ok(c._request_id, 'no x-request-id exposed as _request_id');
});

test('streamed chat completion', async () => {
  const plain = await client().chat.completions.create({ model: 'mock-gpt', messages });
  const stream = await client().chat.completions.create({ model: 'mock-gpt', messages, stream: true });
  let content = '';
  let chunks = 0;
  const finishes = [];
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    assert.equal(chunk.usage, undefined, 'usage reached a client that did not ask for it');
    for (const choice of chunk.choices) {
      content += choice.delta?.content ?? '';
      if (choice.finish_reason) finishes.push(choice.finish_reason);
    }
  }
  assert.ok(chunks > 2, `only ${chunks} chunks`);
  assert.deepEqual(finishes, ['stop']);
  assert.equal(content, plain.choices[0].message.content, 'streamed and plain answers differ');
});

test('streamed chat completion with include_usage', async () => {
  const stream = await client().chat.completions.create({
    model: 'mock-gpt', messages, stream: true, stream_options: { include_usage: true },
  });
  let last;
  for await (const chunk of stream) last = chunk;
  assert.deepEqual(last.choices, []);
  assert.ok(last.usage.total_tokens > 0);
  assert.equal(last.usage.prompt_tokens + last.usage.completion_tokens, last.usage.total_tokens);
});

test('models list and retrieve', async () => {
  const c = client();
  const ids = [];
  for await (const m of c.models.list()) {
    assert.equal(m.object, 'model');
    ids.push(m.id);
  }
  assert.ok(ids.includes('mock-gpt'), `mock-gpt not in ${ids}`);
  assert.ok(ids.includes('mock-embed'), `mock-embed not in ${ids}`);
  const m = await c.models.retrieve('mock-gpt');
  assert.equal(m.id, 'mock-gpt');
});

test('embeddings: the default base64 decoded by the SDK', async () => {
  const seen = [];
  const res = await client(key, seen).embeddings.create({ model: 'mock-embed', input: ['The quick brown fox', 'hello'] });
  const sent = seen.find((s) => s.url.endsWith('/embeddings'));
  assert.equal(sent.body.encoding_format, 'base64', 'the SDK did not ask for base64 (its default)');
  const raw = await sent.response.json();
  assert.equal(typeof raw.data[0].embedding, 'string', 'the gateway did not answer base64');
  assert.equal(res.data.length, 2);
  for (const d of res.data) {
    assert.ok(Array.isArray(d.embedding), 'the SDK did not decode the embedding');
    assert.equal(d.embedding.length, 256);
    assert.ok(d.embedding.every((x) => typeof x === 'number' && Number.isFinite(x)));
    const norm = Math.sqrt(d.embedding.reduce((s, x) => s + x * x, 0));
    assert.ok(Math.abs(norm - 1) < 1e-3, `norm ${norm}, want a unit vector`);
  }
  const floats = await client().embeddings.create({ model: 'mock-embed', input: ['The quick brown fox', 'hello'], encoding_format: 'float' });
  for (let i = 0; i < 2; i++) {
    for (let j = 0; j < 256; j++) {
      assert.equal(Math.fround(floats.data[i].embedding[j]), Math.fround(res.data[i].embedding[j]));
    }
  }
});

test('a wrong key is a 401 AuthenticationError', async () => {
  await assert.rejects(
    client('sk-wrong-key-000000000000').chat.completions.create({ model: 'mock-gpt', messages }),
    (err) => {
      assert.ok(err instanceof OpenAI.AuthenticationError, `got ${err?.constructor?.name}: ${err}`);
      assert.equal(err.status, 401);
      assert.equal(err.code, 'invalid_api_key');
      assert.equal(err.type, 'invalid_request_error');
      assert.ok(err.requestID, 'no x-request-id on the error');
      return true;
    },
  );
});

test('an unknown model is a 404 NotFoundError', async () => {
  await assert.rejects(
    client().chat.completions.create({ model: 'gpt-nope', messages }),
    (err) => {
      assert.ok(err instanceof OpenAI.NotFoundError, `got ${err?.constructor?.name}: ${err}`);
      assert.equal(err.code, 'model_not_found');
      return true;
    },
  );
});
