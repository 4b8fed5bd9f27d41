// The admin dashboard (/admin) in headless Chromium (Debian's, driven by
// playwright-core) against a running gateway whose store
// scripts/test-browser.sh seeded with admin/admintest's tenants (acme,
// globex), keys and six usage events (1, 1, 2, 3, 50 and 240 hours ago):
// sign in as the bootstrap platform admin, the totals and charts show the
// seeded numbers (worked out by hand from the table in
// admin/admintest/admintest.go), the period picker changes them, a key is
// created (shown once, and it works) and revoked (and it stops working),
// a key is created with a limit of its own (2 requests per minute: the 3rd
// chat request is refused), the API's refusal of an edit is shown at its
// field, and the limit is raised (the next request passes); a tenant's
// limits are changed; no request leaves 127.0.0.1 and the page's
// Content-Security-Policy is never violated. Screenshots go to
// test-artifacts/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const base = process.env.MTAI_URL;
const password = process.env.MTAI_ADMIN_PASSWORD;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const artifacts = join(dirname(fileURLToPath(import.meta.url)), 'test-artifacts');

const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// The seeded totals per period (admintest.Events).
const want = {
  '24h': { requests: '4', tokens: '2,250', cost: '$0.016', errors: '25.0%', latency: '250 ms / 2 s', bars: 3 },
  '7d': { requests: '5', tokens: '7,250', cost: '$0.056', errors: '20.0%', latency: '500 ms / 2 s' },
  '30d': { requests: '6', tokens: '22,250', cost: '$0.156', errors: '16.7%', latency: '500 ms / 5 s' },
};

async function modelsStatus(key) {
  const r = await fetch(`${base}/v1/models`, { headers: { Authorization: `Bearer ${key}` } });
  return r.status;
}

// chat makes one chat completion with key on the built-in mock model.
async function chat(key) {
  const r = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'mock-gpt', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }),
  });
  return { status: r.status, body: await r.json().catch(() => ({})) };
}

const focused = (page) => page.evaluate(() => document.activeElement?.id || document.activeElement?.getAttribute('aria-label'));

test('/admin: sign in, seeded totals, period picker, keys and limits', { timeout: 120_000 }, async () => {
  assert.ok(base && password, 'MTAI_URL and MTAI_ADMIN_PASSWORD must be set (scripts/test-browser.sh sets them)');
  assert.equal(new URL(base).hostname, '127.0.0.1', 'the gateway must listen on 127.0.0.1');
  mkdirSync(artifacts, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), 'mtai-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath, args, viewport: { width: 1400, height: 1000 },
  });
  const requests = [];
  const problems = [];
  try {
    const page = context.pages()[0] ?? await context.newPage();
    page.on('request', (r) => requests.push(r.url()));
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
    await page.addInitScript(() => {
      window.__violations = [];
      document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
    });

    const resp = await page.goto(`${base}/admin`, { waitUntil: 'load' });
    assert.equal(resp.status(), 200);
    assert.match(resp.headers()['content-security-policy'] ?? '', /script-src 'self'/);

    // A wrong password is refused on the page.
    await page.fill('#si-tenant', 'demo');
    await page.fill('#si-user', 'admin');
    await page.fill('#si-pass', 'not-the-password');
    await page.click('#signin-form button[type=submit]');
    await page.locator('#signin-error').filter({ hasText: /incorrect/i }).waitFor({ timeout: 10_000 });

    await page.fill('#si-pass', password);
    await page.click('#signin-form button[type=submit]');
    await page.locator('#app').waitFor({ state: 'visible', timeout: 10_000 });

    const kpis = async () => ({
      requests: await page.textContent('#kpi-requests'),
      tokens: await page.textContent('#kpi-tokens'),
      cost: await page.textContent('#kpi-cost'),
      errors: await page.textContent('#kpi-errors'),
      latency: await page.textContent('#kpi-latency'),
    });
    const waitRequests = (n) => page.waitForFunction(
      (n) => document.getElementById('kpi-requests').textContent === n, want[n].requests, { timeout: 10_000 });

    // Last 24 hours (the default).
    await waitRequests('24h');
    const { bars, ...k24 } = want['24h'];
    assert.deepEqual(await kpis(), k24);
    assert.equal(await page.getAttribute('#chart-requests', 'data-total'), '4');
    assert.equal(await page.locator('#chart-requests svg rect').count(), bars, 'one bar per busy hour');
    assert.equal(await page.locator('#chart-tokens svg polyline').count(), 2, 'prompt and completion lines');
    assert.equal(await page.textContent('#kpi-counts'), '3 · 3 · 3'); // demo, acme, globex; their admins; their keys
    assert.match(await page.textContent('#by-tenant tr[data-name=acme]'), /acme\s*3\s*750\s*\$0\.006\s*33\.3%/);
    assert.match(await page.textContent('#by-tenant tr[data-name=globex]'), /globex\s*1\s*1,500\s*\$0\.01\s*0\.0%/);
    assert.match(await page.textContent('#by-model tr[data-name="gpt-4o"]'), /gpt-4o\s*3\s*1,950\s*\$0\.013/);
    assert.match(await page.textContent('#top-keys tr[data-name="acme-prod"]'), /acme-prod.*acme\s*3\s*750\s*\$0\.006/);
    await page.screenshot({ path: join(artifacts, 'dashboard.png'), fullPage: true });

    // The period picker.
    await page.selectOption('#period', '7d');
    await waitRequests('7d');
    assert.deepEqual(await kpis(), want['7d']);
    await page.selectOption('#period', '30d');
    await waitRequests('30d');
    assert.deepEqual(await kpis(), want['30d']);
    assert.equal(await page.getAttribute('#chart-requests', 'data-total'), '6');
    await page.screenshot({ path: join(artifacts, 'dashboard-30d.png'), fullPage: true });

    // One tenant only.
    await page.selectOption('#tenant-filter', 'globex');
    await page.waitForFunction(() => document.getElementById('kpi-requests').textContent === '2', null, { timeout: 10_000 });
    assert.equal(await page.textContent('#kpi-cost'), '$0.05');
    assert.equal(await page.textContent('#keys-tenant'), 'of globex');
    await page.selectOption('#tenant-filter', '');
    await page.waitForFunction(() => document.getElementById('kpi-requests').textContent === '6', null, { timeout: 10_000 });

    // Create a key: shown once, and it works.
    await page.fill('#key-name', 'browser-key');
    await page.click('#key-form button[type=submit]');
    await page.locator('#new-key').waitFor({ state: 'visible', timeout: 10_000 });
    const secret = (await page.textContent('#new-key-value')).trim();
    assert.match(secret, /^sk-mtai-/);
    const row = page.locator('#keys tr[data-name="browser-key"]');
    await row.waitFor({ timeout: 10_000 });
    assert.equal(await modelsStatus(secret), 200, 'the new key works');
    await page.screenshot({ path: join(artifacts, 'dashboard-new-key.png') });
    await page.click('#new-key-done');
    assert.equal(await page.locator('#new-key').isVisible(), false);
    assert.ok(!(await page.content()).includes(secret), 'the secret is shown once only');

    // Revoke it (two clicks): it stops working.
    await row.locator('button', { hasText: 'Revoke' }).click();
    await row.locator('button', { hasText: 'Confirm revoke' }).click();
    await page.locator('#keys tr.revoked[data-name="browser-key"]').waitFor({ timeout: 10_000 });
    assert.equal(await modelsStatus(secret), 401, 'the revoked key is refused');
    assert.match(await row.textContent(), /tenant limits only/, 'a key without limits of its own');

    // A key with a limit of its own, set on the page: 2 requests per minute.
    await page.fill('#key-name', 'limited-key');
    await page.fill('#key-rpm', '2');
    await page.click('#key-form button[type=submit]');
    await page.locator('#new-key').waitFor({ state: 'visible', timeout: 10_000 });
    const limited = (await page.textContent('#new-key-value')).trim();
    assert.match(limited, /^sk-mtai-/);
    await page.click('#new-key-done');
    assert.equal(await page.inputValue('#key-rpm'), '', 'the create form is emptied');
    const lrow = page.locator('#keys tr[data-name="limited-key"]');
    await lrow.waitFor({ timeout: 10_000 });
    assert.match(await lrow.textContent(), /…2 rpm\d/, 'the key lists its own limit (and only that one)');
    for (const n of [1, 2]) assert.equal((await chat(limited)).status, 200, `request ${n} of 2 per minute`);
    const refused = await chat(limited);
    assert.equal(refused.status, 429, 'the 3rd request within the minute');
    assert.equal(refused.body.error?.code, 'rate_limit_exceeded');
    assert.match(refused.body.error?.message ?? '', /this API key's requests per minute/, 'refused by the key, not its tenant');

    // Edit it. The API, not the page, refuses a limit beyond what it can
    // hold (2^63): its message is shown and its field (param) marked and
    // focused, and nothing is saved.
    await lrow.locator('button', { hasText: 'Edit' }).click();
    await page.locator('#key-edit').waitFor({ state: 'visible', timeout: 10_000 });
    assert.equal(await focused(page), 'ke-name', 'the edit form takes the focus');
    assert.equal(await page.inputValue('#ke-rpm'), '2');
    assert.equal(await page.inputValue('#ke-tpm'), '', 'no limit shows as empty');
    await page.fill('#ke-name', 'édition limitée');
    await page.fill('#ke-rpm', '100000000000000000000');
    await page.click('#key-edit button[type=submit]');
    await page.locator('#key-edit-error').filter({ hasText: /^Could not save key limited-key — 'requests_per_minute' must be an integer/ }).waitFor({ timeout: 10_000 });
    assert.equal(await page.getAttribute('#ke-rpm', 'aria-invalid'), 'true');
    assert.equal(await page.getAttribute('#ke-rpm', 'aria-describedby'), 'key-edit-error');
    assert.equal(await page.getAttribute('#ke-name', 'aria-invalid'), null);
    assert.equal(await focused(page), 'ke-rpm', 'the field at fault takes the focus');
    await page.screenshot({ path: join(artifacts, 'dashboard-key-limits.png'), fullPage: true });
    assert.equal((await chat(limited)).status, 429, 'the refused edit changed nothing');

    // Raise the limit (keyboard: Enter in a field submits): the next request passes.
    await page.fill('#ke-name', 'limited-key');
    await page.fill('#ke-rpm', '10');
    await page.press('#ke-rpm', 'Enter');
    await page.locator('#keys-status').filter({ hasText: 'Saved key limited-key: 10 rpm.' }).waitFor({ timeout: 10_000 });
    assert.equal(await page.locator('#key-edit').isVisible(), false, 'the edit form closes');
    assert.equal(await focused(page), 'Edit key limited-key', 'the focus returns to the key\'s Edit button');
    assert.match(await lrow.textContent(), /…10 rpm\d/);
    assert.equal((await chat(limited)).status, 200, 'the raised limit admits the next request');

    // Escape closes the edit form without saving.
    await lrow.locator('button', { hasText: 'Edit' }).click();
    await page.fill('#ke-rpm', '1');
    await page.press('#ke-rpm', 'Escape');
    assert.equal(await page.locator('#key-edit').isVisible(), false);
    assert.match(await lrow.textContent(), /…10 rpm\d/);

    // Change a tenant's limits.
    await page.locator('#tenants tr[data-name=acme] button', { hasText: 'Edit limits' }).click();
    await page.fill('#lim-rpm', '60');
    await page.fill('#lim-budget', '25');
    await page.click('#limits-form button[type=submit]');
    await page.locator('#limits-msg').filter({ hasText: 'Saved the limits of acme.' }).waitFor({ timeout: 10_000 });
    assert.match(await page.textContent('#tenants tr[data-name=acme]'), /acme\s*60\s*∞\s*∞\s*\$25/);
    await page.screenshot({ path: join(artifacts, 'dashboard-managed.png'), fullPage: true });

    const violations = await page.evaluate(() => window.__violations);
    assert.deepEqual(violations, [], 'Content-Security-Policy violations');
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
  const away = requests.filter((u) => !u.startsWith('data:') && new URL(u).hostname !== '127.0.0.1');
  assert.deepEqual(away, [], 'requests that left 127.0.0.1');
  // The wrong password's 401 and the refused edit's 400 are the expected
  // console errors.
  const unexpected = problems.filter((p) => !/status of (401|400)\b/.test(p));
  assert.deepEqual(unexpected, [], 'errors on the page');
  for (const path of ['/admin', '/admin/app.js', '/admin/app.css', '/api/v1/admin/stats', '/api/v1/admin/usage']) {
    assert.ok(requests.some((u) => new URL(u).pathname === path), `the page did not load ${path}`);
  }
});
