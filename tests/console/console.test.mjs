// End-to-end test of the License Ledger web console in headless Chromium.
//
// A plain Node script: `node tests/console/console.test.mjs`. Exit 0 on
// success; on failure it prints what failed and exits non-zero. The server,
// its tenants and licenses are set up by the caller (a Rust test), which
// passes everything through the environment:
//
//   LL_BASE_URL           e.g. http://127.0.0.1:43211
//   LL_ADMIN_TOKEN        tenant acme, roles license-admin + license-vendor
//   LL_USER_TOKEN         user alice of acme, no roles
//   LL_OTHER_ADMIN_TOKEN  admin of tenant globex
//   LL_LICENSE_ID         an acme license with 1 seat and no queue
//   LL_OTHER_LICENSE_ID   a globex license
//   CHROMIUM_PATH         default /usr/bin/chromium
//   LL_SCREENSHOT_DIR     optional: where to save screenshots

import { chromium } from 'playwright-core';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';

const TOTAL_TIMEOUT_MS = 150_000; // under the launching Rust test's 180 s, so this message wins

class TestFailure extends Error {}

function fail(message) {
  throw new TestFailure(message);
}

function required(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`console e2e: missing environment variable ${name}`);
    process.exit(2);
  }
  return v;
}

const BASE = required('LL_BASE_URL').replace(/\/+$/, '');
const ADMIN_TOKEN = required('LL_ADMIN_TOKEN');
const USER_TOKEN = required('LL_USER_TOKEN');
const OTHER_ADMIN_TOKEN = required('LL_OTHER_ADMIN_TOKEN');
const LICENSE_ID = required('LL_LICENSE_ID');
const OTHER_LICENSE_ID = required('LL_OTHER_LICENSE_ID');
const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SCREENSHOT_DIR = process.env.LL_SCREENSHOT_DIR || '';

let stepNo = 0;
function step(text) {
  stepNo += 1;
  console.log(`console e2e: step ${stepNo}: ${text}`);
}
function ok(text) {
  console.log(`console e2e:   ok: ${text}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it returns a truthy value; fails with `what` after timeoutMs. */
async function waitUntil(what, fn, timeoutMs = 10_000, everyMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (err) {
      if (err instanceof TestFailure) throw err;
      last = err;
    }
    if (Date.now() > deadline) {
      const detail = last instanceof Error ? ` (last error: ${last.message.split('\n')[0]})` : ` (last value: ${JSON.stringify(last)})`;
      fail(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
    }
    await sleep(everyMs);
  }
}

/** The API as a plain client (Node's fetch). */
async function callApi(method, apiPath, token, body) {
  const res = await fetch(`${BASE}/api/v1${apiPath}`, {
    method,
    headers: {
      Authorization: `Bearer ${token}`,
      Accept: 'application/json',
      ...(body ? { 'Content-Type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  return { status: res.status, json, text };
}

async function screenshot(page, name) {
  if (!SCREENSHOT_DIR) return;
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, name);
  await page.screenshot({ path: file });
  ok(`screenshot ${file}`);
}

/** The element's text, whitespace collapsed; throws at once if nothing matches. */
async function text(locator) {
  if ((await locator.count()) === 0) throw new Error(`nothing on the page matches ${locator}`);
  return ((await locator.first().textContent({ timeout: 2000 })) || '').replace(/\s+/g, ' ').trim();
}

async function main() {
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: ['--no-sandbox'] });
  const cleanups = [];
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);

    // Every console error and uncaught page error fails the test, except the
    // one deliberate negative check of step 6 (see `expectedNotFound`).
    const consoleErrors = [];
    let expectedNotFound = null; // URL whose 404 Chromium may log as "Failed to load resource"
    let expectedNotFoundSeen = 0;
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const where = msg.location()?.url || '';
      if (expectedNotFound
        && where === expectedNotFound
        && msg.text().startsWith('Failed to load resource: the server responded with a status of 404')) {
        expectedNotFoundSeen += 1;
        return;
      }
      consoleErrors.push(`console error: ${msg.text()}${where ? ` (at ${where})` : ''}`);
    });
    page.on('pageerror', (err) => consoleErrors.push(`page error: ${err.message}`));

    const licenseRow = (id) => page.locator(`[data-testid="license-row"][data-license-id="${id}"]`);

    // ------------------------------------------------------------------
    step('sign in as the acme admin with the keyboard only');
    await page.goto(`${BASE}/console`);
    const tokenField = page.getByTestId('signin-token');
    await tokenField.waitFor({ state: 'visible' });
    await tokenField.focus();
    await page.keyboard.type(ADMIN_TOKEN);
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => document.activeElement?.getAttribute('data-testid'));
    if (focused !== 'signin-submit') fail(`Tab from the token field should reach the Sign in button, reached ${focused}`);
    await page.keyboard.press('Enter');
    const who = await text(page.getByTestId('signed-in-as'));
    if (!who.includes('acme')) fail(`signed-in-as should name tenant acme, got "${who}"`);
    if (!who.includes('tenant admin')) fail(`signed-in-as should say tenant admin, got "${who}"`);
    const token = await page.evaluate(() => sessionStorage.getItem('ll-token'));
    if (token !== ADMIN_TOKEN) fail('the token should be kept in sessionStorage under ll-token');
    const seatsCell = licenseRow(LICENSE_ID).getByTestId('seats-in-use');
    await waitUntil('the acme license row to show 0 / 1 seats in use', async () => (await text(seatsCell)) === '0 / 1');
    const meterLabel = await licenseRow(LICENSE_ID).locator('meter').getAttribute('aria-label');
    if (!meterLabel || !meterLabel.includes('0 of 1')) fail(`the seat meter needs an aria-label with the count, got ${meterLabel}`);
    ok(`signed in as "${who}"; license row shows 0 / 1`);

    // ------------------------------------------------------------------
    step('acquire a seat as alice through the API; the list updates live');
    const acquired = await callApi('POST', '/licenses/acquire', USER_TOKEN, { license_id: LICENSE_ID, hardware_id: 'console-e2e' });
    if (![200, 202].includes(acquired.status) || !acquired.json?.session_id) {
      fail(`acquire should answer 200/202 with a session_id, got ${acquired.status} ${acquired.text}`);
    }
    const sessionId = acquired.json.session_id;
    await waitUntil('the license row to show 1 / 1 without a reload', async () => (await text(seatsCell)) === '1 / 1');
    const lag = await text(licenseRow(LICENSE_ID).getByTestId('projection-lag'));
    if (!/\d+\s*ms/.test(lag)) fail(`the row should show the projection lag in ms, got "${lag}"`);
    ok(`session ${sessionId} shows as 1 / 1 (projection lag ${lag})`);
    await screenshot(page, 'console-licenses.png');

    // ------------------------------------------------------------------
    step('open the license view and force-release alice\'s session');
    await licenseRow(LICENSE_ID).getByTestId('license-link').click();
    await waitUntil('the license view', async () => page.evaluate(() => location.hash).then((h) => h === `#/licenses/${LICENSE_ID}` || h === `#/licenses/${encodeURIComponent(LICENSE_ID)}`), 5000);
    const sessionRow = page.locator(`[data-testid="session-row"][data-session-id="${sessionId}"]`);
    await waitUntil('the session row of alice on console-e2e', async () => {
      const t = await text(sessionRow);
      return t.includes('alice') && t.includes('console-e2e');
    });
    await sessionRow.getByTestId('force-release').click();
    const confirmButton = sessionRow.getByTestId('confirm-release');
    await confirmButton.waitFor({ state: 'visible' });
    const confirmFocused = await confirmButton.evaluate((el) => el === document.activeElement);
    if (!confirmFocused) fail('after Force release, focus should move to Confirm release');
    await confirmButton.click();
    await waitUntil('the session row to disappear', async () => (await sessionRow.count()) === 0);
    const heartbeat = await waitUntil('the released session\'s heartbeat to answer 404', async () => {
      const r = await callApi('PUT', `/licenses/heartbeat/${sessionId}`, USER_TOKEN);
      if (r.status === 404) return r;
      if (r.status !== 200) fail(`heartbeat after the release answered ${r.status} ${r.text}`);
      return null;
    }, 5000, 250);
    ok(`released through the UI; heartbeat answers ${heartbeat.status}`);

    // ------------------------------------------------------------------
    step('cause a no_seats denial; the denials table and the usage report show it');
    const second = await callApi('POST', '/licenses/acquire', USER_TOKEN, { license_id: LICENSE_ID, hardware_id: 'console-e2e-2' });
    if (![200, 202].includes(second.status) || !second.json?.session_id) {
      fail(`the acquire of console-e2e-2 should get the freed seat, got ${second.status} ${second.text}`);
    }
    cleanups.push(async () => {
      const r = await callApi('DELETE', `/licenses/release/${second.json.session_id}`, USER_TOKEN);
      console.log(`console e2e: cleanup: released console-e2e-2 (${r.status})`);
    });
    const third = await callApi('POST', '/licenses/acquire', USER_TOKEN, { license_id: LICENSE_ID, hardware_id: 'console-e2e-3' });
    if (third.status !== 403) fail(`the acquire of console-e2e-3 should be denied (403), got ${third.status} ${third.text}`);
    if (third.json?.reason && third.json.reason !== 'no_seats') fail(`the denial's reason should be no_seats, got ${third.json.reason}`);
    const denialRow = page.locator('[data-testid="denial-row"]', { hasText: 'console-e2e-3' });
    await waitUntil('a recent-denials row for console-e2e-3 with reason no_seats', async () => {
      if ((await denialRow.count()) === 0) return false;
      return (await text(denialRow.first().getByTestId('denial-reason'))).includes('no_seats');
    });
    const seatsHeader = page.getByTestId('seats-in-use');
    await waitUntil('the license header to show 1 / 1', async () => (await text(seatsHeader)) === '1 / 1');
    const headerLag = await text(page.getByTestId('projection-lag'));
    if (!/\d+\s*ms/.test(headerLag)) fail(`the license header should show the projection lag, got "${headerLag}"`);
    let lastRefresh = 0;
    await waitUntil('the usage section to count at least 1 denial', async () => {
      if (Date.now() - lastRefresh > 2500) {
        lastRefresh = Date.now();
        await page.getByTestId('refresh-report').click();
      }
      const n = Number.parseInt((await text(page.getByTestId('usage-denials'))).replace(/[^\d]/g, ''), 10);
      return Number.isFinite(n) && n >= 1;
    }, 12_000, 300);
    const chartRole = await page.getByTestId('series-chart').getAttribute('role').catch(() => null);
    if (chartRole !== 'img') fail('the seats-over-time chart should be an inline SVG with role="img"');
    ok('denial listed with reason no_seats; usage report counts it');
    await screenshot(page, 'console-license.png');

    // ------------------------------------------------------------------
    step('audit: run a verification');
    await page.getByTestId('nav-audit').click();
    const runButton = page.getByTestId('run-verification');
    await runButton.click();
    const result = page.getByTestId('verification-result');
    await waitUntil('the verification outcome', async () => (await text(result)).startsWith('Verified') || (await text(result)).includes('failed'), 60_000, 250);
    const outcome = await text(result);
    if (!outcome.startsWith('Verified: OK')) fail(`the verification should be OK, got "${outcome}"`);
    if (await runButton.isDisabled()) fail('Run verification should be enabled again after the run');
    ok(outcome);
    await screenshot(page, 'console-audit.png');

    // ------------------------------------------------------------------
    step('sign out, sign in as the globex admin: acme\'s license is invisible');
    await page.getByTestId('signout').click();
    await tokenField.waitFor({ state: 'visible' });
    if (await page.evaluate(() => sessionStorage.getItem('ll-token'))) fail('Sign out should clear the token');
    await tokenField.fill(OTHER_ADMIN_TOKEN);
    await page.getByTestId('signin-submit').click();
    await licenseRow(OTHER_LICENSE_ID).waitFor({ state: 'visible' });
    await waitUntil('the globex row to show its live seat count', async () => /^\d+ \/ \d+$/.test(await text(licenseRow(OTHER_LICENSE_ID).getByTestId('seats-in-use'))));
    const html = await page.content();
    if (html.includes(LICENSE_ID)) fail('the acme license id appears on the globex admin\'s licenses view');
    ok('globex sees its own license and not acme\'s');

    // The deliberate negative check: the usage call for another tenant's
    // license answers 404, which Chromium logs as "Failed to load resource:
    // the server responded with a status of 404" for that one URL. Exactly
    // that message for exactly that URL is filtered, only during this check.
    expectedNotFound = `${BASE}/api/v1/licenses/${LICENSE_ID}/usage`;
    await page.evaluate((id) => { location.hash = `#/licenses/${id}`; }, LICENSE_ID);
    const errorNotice = page.getByTestId('error');
    await waitUntil('a not-found message for acme\'s license', async () => /not found/i.test(await text(errorNotice.first())));
    await sleep(2500); // a stopped poll must not ask again
    expectedNotFound = null;
    if (expectedNotFoundSeen > 1) fail(`the license view kept polling after a 404 (${expectedNotFoundSeen} requests logged)`);
    ok(`not-found message shown ("${await text(errorNotice.first())}"; Chromium logged the expected 404 ${expectedNotFoundSeen} time(s))`);

    // ------------------------------------------------------------------
    step('phone width: no horizontal overflow on the licenses view');
    await page.setViewportSize({ width: 375, height: 740 });
    await page.evaluate(() => { location.hash = '#/licenses'; });
    await licenseRow(OTHER_LICENSE_ID).waitFor({ state: 'visible' });
    await sleep(300);
    const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
    if (scrollWidth > 375 + 1) fail(`the page overflows horizontally at 375 px (scrollWidth ${scrollWidth})`);
    ok(`scrollWidth ${scrollWidth} <= 376`);
    await screenshot(page, 'console-phone.png');

    // ------------------------------------------------------------------
    step('no console errors or uncaught errors');
    const status = await text(page.getByTestId('status'));
    if (status.includes('Unexpected error')) consoleErrors.push(`status line: ${status}`);
    if (consoleErrors.length) fail(`the page logged errors:\n  ${consoleErrors.join('\n  ')}`);
    ok('none');
  } finally {
    for (const c of cleanups) {
      try {
        await c();
      } catch (err) {
        console.log(`console e2e: cleanup failed: ${err.message}`);
      }
    }
    await browser.close();
  }
}

const guard = setTimeout(() => {
  console.error(`console e2e: FAILED: the whole test took longer than ${TOTAL_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, TOTAL_TIMEOUT_MS);
guard.unref();

main().then(() => {
  console.log('console e2e: 1 passed, 0 failed');
  process.exit(0);
}, (err) => {
  console.error(`console e2e: FAILED at step ${stepNo}: ${err instanceof TestFailure ? err.message : (err && err.stack) || err}`);
  console.log('console e2e: 0 passed, 1 failed');
  process.exit(1);
});
