// /docs in headless Chromium (Debian's, driven by playwright-core) against a
// running gateway (MTAI_URL, MTAI_KEY: see scripts/test-browser.sh):
// Swagger UI renders the operations of /openapi.json, authorizes with the
// API key and sends a request from the page, and no request the page makes
// leaves 127.0.0.1. Screenshots go to test-artifacts/ (not in git).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const base = process.env.MTAI_URL;
const key = process.env.MTAI_KEY;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const artifacts = join(dirname(fileURLToPath(import.meta.url)), 'test-artifacts');

// Flags for a headless Chromium that asks nothing of the network by itself.
const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

test('/docs renders offline and talks to this gateway only', { timeout: 120_000 }, async () => {
  assert.ok(base && key, 'MTAI_URL and MTAI_KEY must be set (scripts/test-browser.sh sets them)');
  assert.equal(new URL(base).hostname, '127.0.0.1', 'the gateway must listen on 127.0.0.1');
  mkdirSync(artifacts, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), 'mtai-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath, args, viewport: { width: 1280, height: 900 },
  });
  const requests = []; // every URL the page asked for
  const problems = []; // page errors, console errors, blocked requests
  try {
    const page = context.pages()[0] ?? await context.newPage();
    page.on('request', (r) => requests.push({ url: r.url(), method: r.method(), headers: r.headers() }));
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
    // Content-Security-Policy violations: requests the page tried and the browser refused.
    await page.addInitScript(() => {
      window.__violations = [];
      document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
    });

    const resp = await page.goto(`${base}/docs`, { waitUntil: 'load' });
    assert.equal(resp.status(), 200);
    await page.waitForSelector('.opblock', { timeout: 30_000 });
    await page.waitForSelector('.info .title', { timeout: 10_000 });
    const title = await page.locator('.info .title').first().innerText();
    assert.match(title, /mtai/);
    const operations = await page.locator('.opblock').count();
    assert.ok(operations >= 20, `only ${operations} operations rendered`);
    await page.screenshot({ path: join(artifacts, 'docs.png') });

    // Authorize with the API key, as a user of the page would.
    await page.locator('.auth-wrapper button.authorize').click();
    const bearer = page.locator('.auth-container').filter({ hasText: 'bearerAuth' });
    await bearer.locator('input').fill(key);
    await bearer.locator('button[type=submit]').click();
    await page.locator('.modal-ux .close-modal').click();

    // Try GET /v1/models from the page: it must carry the key and answer 200.
    const op = page.locator('#operations-openai-listModels');
    await op.locator('.opblock-summary').click();
    await op.locator('button.try-out__btn').click();
    await op.locator('button.execute').click();
    const status = op.locator('.live-responses-table tr.response .response-col_status').first();
    await status.waitFor({ timeout: 15_000 });
    assert.equal((await status.innerText()).trim(), '200');
    await op.scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(artifacts, 'docs-try-it-out.png') });
    await page.screenshot({ path: join(artifacts, 'docs-full.png'), fullPage: true });

    // With the platform chat configured: send its first example from the page.
    const chatOp = page.locator('#operations-chat-chat');
    if (await chatOp.count() > 0) {
      await chatOp.locator('.opblock-summary').click();
      await chatOp.locator('button.try-out__btn').click();
      await chatOp.locator('button.execute').click();
      const chatStatus = chatOp.locator('.live-responses-table tr.response .response-col_status').first();
      await chatStatus.waitFor({ timeout: 15_000 });
      assert.equal((await chatStatus.innerText()).trim(), '200');
      const answer = await chatOp.locator('.live-responses-table tr.response .response-col_description pre').first().innerText();
      assert.match(answer, /"conversation_id": \d+/);
      await chatOp.scrollIntoViewIfNeeded();
      await page.screenshot({ path: join(artifacts, 'docs-chat.png') });
    }

    const sent = requests.find((r) => new URL(r.url).pathname === '/v1/models');
    assert.ok(sent, 'the page sent no request to /v1/models');
    assert.equal(sent.headers.authorization, `Bearer ${key}`);

    const violations = await page.evaluate(() => window.__violations);
    assert.deepEqual(violations, [], 'Content-Security-Policy violations');
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }

  // Nothing left this machine: every URL is on 127.0.0.1 (data: URLs are in the page).
  assert.ok(requests.length >= 5, `only ${requests.length} requests recorded`);
  const away = requests.filter((r) => !r.url.startsWith('data:') && new URL(r.url).hostname !== '127.0.0.1');
  assert.deepEqual(away.map((r) => r.url), [], 'requests that left 127.0.0.1');
  assert.deepEqual(problems, [], 'errors on the page');
  for (const path of ['/docs', '/docs/swagger-ui-bundle.js', '/docs/swagger-initializer.js', '/openapi.json']) {
    assert.ok(requests.some((r) => new URL(r.url).pathname === path), `the page did not load ${path}`);
  }
});
