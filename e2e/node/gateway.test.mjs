// End-to-end test of llmgate with the official openai npm package.
//
// The Go e2e test starts the gateway in front of the simulated backend (fakellm) and runs
//
//	LLMGATE_BASE_URL=http://127.0.0.1:PORT/v1 LLMGATE_MODEL=chat node --test gateway.test.mjs
//
// LLMGATE_EMBEDDING_MODEL optionally names the alias used for /v1/embeddings; it defaults to
// LLMGATE_MODEL. What this file checks is what a real app using the SDK depends on: response
// shapes, SSE framing, the usage chunk, typed errors, and the SDK's own retry on 429.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const baseURL = process.env.LLMGATE_BASE_URL;
const model = process.env.LLMGATE_MODEL;
const embeddingModel = process.env.LLMGATE_EMBEDDING_MODEL || model;
if (!baseURL || !model) {
  throw new Error(
    'LLMGATE_BASE_URL (e.g. http://127.0.0.1:8080/v1) and LLMGATE_MODEL (e.g. chat) must be set; ' +
      'this file is normally run by the Go e2e test, which starts the gateway',
  );
}

const TIMEOUT_MS = 30_000;
const messages = [{ role: 'user', content: 'Say hello in a few words.' }];

// maxRetries 0: a retry must never hide a failure, except in the test that is about retries.
const client = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0, timeout: TIMEOUT_MS });

// collect drains a chat completion stream and summarises it.
async function collect(stream) {
  const chunks = [];
  let text = '';
  let contentDeltas = 0;
  let finishReason = null;
  for await (const chunk of stream) {
    chunks.push(chunk);
    for (const choice of chunk.choices ?? []) {
      const content = choice.delta?.content;
      if (typeof content === 'string' && content !== '') {
        contentDeltas++;
        text += content;
      }
      if (choice.finish_reason) finishReason = choice.finish_reason;
    }
  }
  return { chunks, text, contentDeltas, finishReason };
}

function assertUsage(usage, where) {
  assert.ok(usage, `${where}: usage is missing`);
  for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) {
    assert.equal(typeof usage[k], 'number', `${where}: usage.${k} is ${JSON.stringify(usage[k])}, want a number`);
  }
  assert.ok(usage.completion_tokens > 0, `${where}: usage.completion_tokens = ${usage.completion_tokens}, want > 0`);
}

describe('llmgate via the openai SDK', { timeout: 4 * TIMEOUT_MS }, () => {
  test('chat completion, non-streaming, echoes x-request-id', { timeout: TIMEOUT_MS }, async () => {
    const { data, response } = await client.chat.completions
      .create({ model, messages, max_tokens: 32 }, { headers: { 'x-request-id': 'node-e2e-1' } })
      .withResponse();

    const content = data.choices?.[0]?.message?.content;
    assert.equal(typeof content, 'string', `choices[0].message.content is ${JSON.stringify(content)}, want a string`);
    assert.ok(content.length > 0, 'choices[0].message.content is empty');
    assertUsage(data.usage, 'non-streaming response');
    assert.equal(
      response.headers.get('x-request-id'),
      'node-e2e-1',
      'response x-request-id should echo the request header x-request-id: node-e2e-1',
    );
  });

  test('chat completion, non-streaming, generates x-request-id', { timeout: TIMEOUT_MS }, async () => {
    const { response, request_id } = await client.chat.completions
      .create({ model, messages, max_tokens: 8 })
      .withResponse();
    assert.ok(response.ok, `status ${response.status}`);
    assert.ok(request_id, 'response has no x-request-id header although the gateway should generate one');
  });

  test('chat completion, streaming, without usage', { timeout: TIMEOUT_MS }, async () => {
    const stream = await client.chat.completions.create({ model, messages, max_tokens: 32, stream: true });
    const got = await collect(stream);

    assert.ok(got.contentDeltas >= 2, `got ${got.contentDeltas} content deltas, want >= 2`);
    assert.ok(got.text.length > 0, 'concatenated content deltas are empty');
    assert.ok(got.finishReason, 'no chunk carried a finish_reason; the stream did not end cleanly');
    for (const [i, chunk] of got.chunks.entries()) {
      assert.equal(chunk.object, 'chat.completion.chunk', `chunk ${i}: object = ${JSON.stringify(chunk.object)}`);
      assert.ok(chunk.usage == null, `chunk ${i} carries usage ${JSON.stringify(chunk.usage)} without stream_options.include_usage`);
    }
  });

  test('chat completion, streaming, with include_usage', { timeout: TIMEOUT_MS }, async () => {
    const stream = await client.chat.completions.create({
      model,
      messages,
      max_tokens: 32,
      stream: true,
      stream_options: { include_usage: true },
    });
    const got = await collect(stream);

    assert.ok(got.contentDeltas >= 2, `got ${got.contentDeltas} content deltas, want >= 2`);
    assert.ok(got.text.length > 0, 'concatenated content deltas are empty');
    assert.ok(got.finishReason, 'no chunk carried a finish_reason; the stream did not end cleanly');
    const last = got.chunks.at(-1);
    assert.ok(last, 'stream had no chunks');
    assert.deepEqual(last.choices, [], 'the usage chunk (last) should have choices: []');
    assertUsage(last.usage, 'last chunk');
    for (const [i, chunk] of got.chunks.slice(0, -1).entries()) {
      assert.ok(chunk.usage == null, `chunk ${i} (not the last) carries usage ${JSON.stringify(chunk.usage)}`);
    }
  });

  test('a cached answer replays as an SSE stream, usage chunk included', { timeout: TIMEOUT_MS }, async () => {
    // temperature 0 makes the request cacheable; the Go test enables the cache on this alias.
    const req = { model, messages: [{ role: 'user', content: 'Cache me, node.' }], max_tokens: 16, temperature: 0 };
    const first = await client.chat.completions.create(req);
    const want = first.choices[0].message.content;
    // Stores land microseconds after the answer: ask until the cache answers.
    let hit = null;
    for (let i = 0; i < 200 && !hit; i++) {
      const { data, response } = await client.chat.completions
        .create({ ...req, stream: true, stream_options: { include_usage: true } })
        .withResponse();
      const got = await collect(data);
      if (response.headers.get('x-llmgate-cache') === 'hit') hit = got;
    }
    assert.ok(hit, 'no cache hit after 200 identical requests');
    assert.equal(hit.text, want, 'the replayed stream says something else than the cached answer');
    assert.equal(hit.finishReason, first.choices[0].finish_reason);
    assert.ok(hit.contentDeltas >= 2, `replay came in ${hit.contentDeltas} content deltas, want a stream of several`);
    const last = hit.chunks.at(-1);
    assert.deepEqual(last.choices, [], 'the usage chunk (last) should have choices: []');
    assert.deepEqual(last.usage, first.usage, 'the replay reports what the cached answer cost');
  });

  test('embeddings, SDK default encoding (base64) and float', { timeout: TIMEOUT_MS }, async () => {
    const input = ['The quick brown fox.', 'Jumped over the lazy dog.'];
    // Without encoding_format the SDK asks for base64 and decodes float32 itself, as real apps do.
    const byDefault = await client.embeddings.create({ model: embeddingModel, input });
    const asFloat = await client.embeddings.create({ model: embeddingModel, input, encoding_format: 'float' });

    for (const [name, res] of [['default (base64)', byDefault], ['float', asFloat]]) {
      assert.equal(res.data?.length, 2, `${name}: got ${res.data?.length} embeddings, want 2`);
      const dims = res.data.map((d) => d.embedding?.length);
      assert.ok(dims[0] > 0, `${name}: embedding 0 has length ${dims[0]}, want > 0`);
      assert.equal(dims[1], dims[0], `${name}: embeddings have different lengths ${dims}`);
      for (const [i, d] of res.data.entries()) {
        assert.equal(d.index, i, `${name}: data[${i}].index = ${d.index}`);
        assert.ok(d.embedding.every(Number.isFinite), `${name}: embedding ${i} has a non-finite value`);
      }
    }
    assert.equal(
      byDefault.data[0].embedding.length,
      asFloat.data[0].embedding.length,
      'base64 and float embeddings have different dimensions',
    );
  });

  test('models.list contains the model alias', { timeout: TIMEOUT_MS }, async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.ok(ids.includes(model), `models.list() = ${JSON.stringify(ids)}, want it to contain ${JSON.stringify(model)}`);
  });

  test('unknown model rejects with NotFoundError model_not_found', { timeout: TIMEOUT_MS }, async () => {
    for (const stream of [false, true]) {
      await assert.rejects(
        client.chat.completions.create({ model: 'no-such-model', messages, stream }),
        (err) => {
          assert.ok(err instanceof OpenAI.NotFoundError, `stream=${stream}: got ${err?.constructor?.name}: ${err?.message}, want NotFoundError`);
          assert.equal(err.status, 404, `stream=${stream}: status`);
          assert.equal(err.code, 'model_not_found', `stream=${stream}: error.code`);
          assert.ok(typeof err.error?.message === 'string' && err.error.message !== '', `stream=${stream}: error.message is empty`);
          return true;
        },
      );
    }
  });

  test('429 surfaces as RateLimitError when the client does not retry', { timeout: TIMEOUT_MS }, async () => {
    await assert.rejects(
      client.chat.completions.create(
        { model, messages, max_tokens: 8 },
        { headers: { 'X-Fakellm-Status-Unless-Retry': '429' } },
      ),
      (err) => {
        assert.ok(err instanceof OpenAI.RateLimitError, `got ${err?.constructor?.name}: ${err?.message}, want RateLimitError`);
        assert.equal(err.status, 429);
        return true;
      },
    );
  });

  test('429 is retried by the SDK and the retry succeeds', { timeout: TIMEOUT_MS }, async () => {
    // Record x-stainless-retry-count of every attempt the SDK makes.
    const attempts = [];
    const countingFetch = (url, init) => {
      attempts.push(new Headers(init?.headers).get('x-stainless-retry-count'));
      return fetch(url, init);
    };
    const retrying = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 2, timeout: TIMEOUT_MS, fetch: countingFetch });

    let res;
    try {
      res = await retrying.chat.completions.create(
        { model, messages, max_tokens: 8 },
        { headers: { 'X-Fakellm-Status-Unless-Retry': '429' } },
      );
    } catch (err) {
      assert.fail(`request failed after ${attempts.length} attempts (retry counts ${JSON.stringify(attempts)}): ${err?.message}`);
    }
    assert.ok(res.choices?.[0]?.message?.content, 'retried response has no content');
    assert.equal(attempts.length, 2, `SDK made ${attempts.length} attempts (retry counts ${JSON.stringify(attempts)}), want 2: one 429, one success`);
    assert.deepEqual(attempts, ['0', '1'], 'x-stainless-retry-count of the attempts');
  });

  test('malformed request rejects with BadRequestError', { timeout: TIMEOUT_MS }, async () => {
    await assert.rejects(
      client.chat.completions.create({ model, messages: 'not-an-array' }),
      (err) => {
        assert.ok(err instanceof OpenAI.BadRequestError, `got ${err?.constructor?.name}: ${err?.message}, want BadRequestError`);
        assert.equal(err.status, 400);
        return true;
      },
    );
  });
});
