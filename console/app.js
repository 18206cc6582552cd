// License Ledger web console: plain ES module, no dependencies, no build step.
//
// Rules this file keeps:
// - Every number shown comes from an API answer; the browser only formats it
//   (sums of a report's per-reason denials or per-user seat-hours are the only
//   arithmetic, plus the largest of the report's per-day peaks).
// - All API text reaches the page through textContent / attributes, never
//   innerHTML.
// - Each view owns an AbortController: leaving the view aborts its requests
//   and stops its timers.

const TOKEN_KEY = 'll-token';
const API = '/api/v1';
const POLL_MS = 2000;
const AUDIT_POLL_MS = 10000;
const REPORT_POLL_MS = 15000;
const LIST_POLL_MS = 30000;
const NETWORK_RETRY_MS = 5000;
// Budget for the licenses view's per-license usage polls (the server limits
// each user to a few hundred requests a minute).
const USAGE_REQUESTS_PER_SEC = 4;
const ADMIN_ROLE = 'license-admin';
const VENDOR_ROLE = 'license-vendor';
const SVG_NS = 'http://www.w3.org/2000/svg';

const WINDOWS = [
  { value: 'hour', label: 'Last hour', ms: 3600e3 },
  { value: 'day', label: 'Last 24 hours', ms: 24 * 3600e3 },
  { value: 'week', label: 'Last 7 days', ms: 7 * 24 * 3600e3 },
];

const REASON_LABELS = {
  no_seats: 'No seats free',
  suspended: 'Suspended',
  license_expired: 'License expired',
  user_limit: 'Per-user limit',
  reserved: 'Reserved for others',
  queue_full: 'Queue full',
};

// ---------------------------------------------------------------------------
// DOM helpers

/** Creates an element. Strings and numbers among the children become text nodes. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Creates an SVG element. */
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null && v !== false) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children (skipping null/false, unlike replaceChildren). */
function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/**
 * Puts child at index i of parent unless it is there already. (Moving a node
 * that holds focus would drop the focus, so unchanged rows stay put.)
 */
function placeAt(parent, child, i) {
  const at = parent.children[i] || null;
  if (at !== child) parent.insertBefore(child, at);
}

function setText(el, text) {
  const t = String(text);
  if (el.textContent !== t) el.textContent = t;
}

function visuallyHidden(text) {
  return h('span', { class: 'visually-hidden' }, text);
}

/** A table in a horizontally scrollable, keyboard-focusable wrapper. */
function tableWrap(label, table) {
  return h('div', { class: 'table-wrap', role: 'region', 'aria-label': label, tabindex: '0' }, table);
}

function headerRow(...names) {
  return h('tr', {}, names.map((n) => (typeof n === 'string'
    ? h('th', { scope: 'col' }, n)
    : h('th', { scope: 'col', class: n.class || '' }, n.text))));
}

// ---------------------------------------------------------------------------
// Formatting

const numberFmt = new Intl.NumberFormat(undefined);
const decimalFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

function fmtNum(n) {
  return typeof n === 'number' && Number.isFinite(n) ? numberFmt.format(n) : '—';
}

function fmtDecimal(n) {
  return typeof n === 'number' && Number.isFinite(n) ? decimalFmt.format(n) : '—';
}

function fmtSecs(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '—';
  if (n < 120) return `${decimalFmt.format(n)} s`;
  if (n < 7200) return `${decimalFmt.format(n / 60)} min`;
  return `${decimalFmt.format(n / 3600)} h`;
}

function fmtLag(ms) {
  return typeof ms === 'number' && Number.isFinite(ms) ? `${numberFmt.format(ms)} ms` : '—';
}

function parseTime(iso) {
  if (typeof iso !== 'string') return null;
  const t = Date.parse(iso);
  return Number.isFinite(t) ? new Date(t) : null;
}

function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
});
const dateFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
const shortDateTimeFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });

function fmtTime(iso) {
  const d = parseTime(iso);
  if (!d) return '—';
  return sameDay(d, new Date()) ? timeFmt.format(d) : dateTimeFmt.format(d);
}

/** A <time> element for an RFC 3339 string (or a dash for null). */
function timeEl(iso, fmt) {
  const d = parseTime(iso);
  if (!d) return h('span', { class: 'muted', title: 'not recorded' }, '—');
  return h('time', { datetime: d.toISOString(), title: dateTimeFmt.format(d) }, fmt ? fmt.format(d) : fmtTime(iso));
}

function fmtFullTime(iso) {
  const d = parseTime(iso);
  return d ? dateTimeFmt.format(d) : '—';
}

function plural(n, one, many) {
  return `${fmtNum(n)} ${n === 1 ? one : many}`;
}

function shortId(id) {
  const str = String(id ?? '');
  return str.length > 8 ? `${str.slice(0, 8)}…` : str;
}

function roleLabel(role) {
  if (role === ADMIN_ROLE) return 'tenant admin';
  if (role === VENDOR_ROLE) return 'vendor';
  return role;
}

function reasonLabel(reason) {
  return REASON_LABELS[reason] || String(reason);
}

// ---------------------------------------------------------------------------
// Token and claims

/** Decodes a JWT's payload (base64url JSON). No verification: the server verifies. */
function decodeJwt(token) {
  const parts = token.split('.');
  if (parts.length !== 3 || parts.some((p) => p.length === 0)) {
    throw new Error('a JWT has three dot-separated parts');
  }
  let b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
  b64 += '='.repeat((4 - (b64.length % 4)) % 4);
  let bytes;
  try {
    bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  } catch {
    throw new Error('its payload is not base64url');
  }
  let payload;
  try {
    payload = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new Error('its payload is not JSON');
  }
  if (!payload || typeof payload !== 'object' || Array.isArray(payload)) {
    throw new Error('its payload is not a JSON object');
  }
  return payload;
}

function identityFrom(token) {
  const claims = decodeJwt(token);
  let roles = claims.roles;
  if (typeof roles === 'string') roles = [roles];
  if (!Array.isArray(roles)) roles = [];
  roles = roles.filter((r) => typeof r === 'string');
  const firebaseTenant = claims.firebase && typeof claims.firebase === 'object' ? claims.firebase.tenant : undefined;
  const tenant = [claims.tenant_id, firebaseTenant, claims.tenant].find((t) => typeof t === 'string' && t) || '';
  return {
    token,
    sub: typeof claims.sub === 'string' ? claims.sub : '',
    tenant,
    roles,
    isAdmin: roles.includes(ADMIN_ROLE),
  };
}

// ---------------------------------------------------------------------------
// Status line (the page's polite live region)

const statusState = { info: '', problems: new Map() };

function renderStatus() {
  const el = document.getElementById('status');
  const problems = [...statusState.problems.values()];
  const text = problems.length ? problems[problems.length - 1] : statusState.info;
  el.classList.toggle('is-error', problems.length > 0);
  el.classList.toggle('is-empty', !text);
  setText(el, text);
}

/** Shows an informational message (e.g. the outcome of an action). */
function announce(message) {
  statusState.info = message;
  renderStatus();
}

/** Shows a problem of one source (a poll) until that source succeeds again. */
function setProblem(source, message) {
  if (statusState.problems.get(source) === message) return;
  statusState.problems.delete(source);
  statusState.problems.set(source, message);
  renderStatus();
}

function clearProblem(source) {
  if (statusState.problems.delete(source)) renderStatus();
}

function resetStatus() {
  statusState.info = '';
  statusState.problems.clear();
  renderStatus();
}

// ---------------------------------------------------------------------------
// API

class ApiError extends Error {
  constructor(status, title, detail, retryAfterSecs, body) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.retryAfterSecs = retryAfterSecs;
    this.body = body;
  }
}

function isAbort(err) {
  return err && err.name === 'AbortError';
}

let identity = null;

/** Calls the API with the bearer token. Resolves to the JSON body (null for 204). */
async function api(path, { method = 'GET', signal } = {}) {
  if (!identity) throw new ApiError(401, 'Not signed in', '');
  let res;
  try {
    res = await fetch(API + path, {
      method,
      signal,
      cache: 'no-store',
      headers: { Authorization: `Bearer ${identity.token}`, Accept: 'application/json' },
    });
  } catch (err) {
    if (isAbort(err)) throw err;
    throw new ApiError(0, 'Network error', 'the server cannot be reached');
  }
  if (res.ok) {
    if (res.status === 204) return null;
    try {
      return await res.json();
    } catch (err) {
      if (isAbort(err)) throw err;
      throw new ApiError(res.status, 'Bad response', 'the server answered something that is not JSON');
    }
  }
  let body = null;
  try {
    body = await res.json();
  } catch (err) {
    if (isAbort(err)) throw err;
  }
  const title = (body && typeof body.title === 'string' && body.title) || res.statusText || `HTTP ${res.status}`;
  const detail = body && typeof body.detail === 'string' ? body.detail : '';
  const retry = Number.parseInt(res.headers.get('Retry-After') || '', 10);
  const err = new ApiError(res.status, title, detail, Number.isFinite(retry) ? retry : undefined, body);
  if (res.status === 401) {
    signOut(`The server did not accept your token${detail ? ` (${detail})` : ''}. It may have expired: sign in again.`, { keepRoute: true });
  }
  throw err;
}

/** A readable sentence for an API error. */
function describe(err, what) {
  if (err.status === 0) return `${what}: the server cannot be reached. Retrying…`;
  if (err.status === 403) return `${what}: you are not allowed to see this${err.detail ? ` (${err.detail})` : ''}.`;
  if (err.status === 404) return `${what}: not found${err.detail ? ` (${err.detail})` : ''}.`;
  if (err.status === 429) return `${what}: the server is rate limiting this console; retrying in ${err.retryAfterSecs ?? 5} s.`;
  if (err.status === 503) return `${what}: temporarily unavailable${err.detail ? ` (${err.detail})` : ''}. Retrying…`;
  return `${what}: ${err.title}${err.status ? ` (${err.status})` : ''}${err.detail ? ` — ${err.detail}` : ''}.`;
}

/**
 * Handles a poll's failure: reports it in the status line and tells how long
 * to wait before the next try. Returns null for errors that need no report.
 */
function pollFailure(source, err, what) {
  if (isAbort(err) || err.status === 401) return null;
  setProblem(source, describe(err, what));
  if (err.status === 429) return Math.max(1, err.retryAfterSecs ?? 5) * 1000;
  if (err.status === 0) return NETWORK_RETRY_MS;
  if (err.status === 503 && err.retryAfterSecs) return Math.max(POLL_MS, err.retryAfterSecs * 1000);
  return null;
}

/**
 * Runs fn now and then again `interval` ms after each run ends, until the
 * signal aborts. fn may return a number: the delay before its next run.
 * Returns { now() } to run it again at once (coalesced with a running one).
 */
function poll(signal, fn, interval) {
  let timer = 0;
  let running = false;
  let again = false;
  const delayOf = () => (typeof interval === 'function' ? interval() : interval);
  const run = async () => {
    clearTimeout(timer);
    if (signal.aborted) return;
    if (running) {
      again = true;
      return;
    }
    if (document.hidden) {
      timer = setTimeout(run, delayOf());
      return;
    }
    running = true;
    let delay = delayOf();
    try {
      const d = await fn();
      if (typeof d === 'number' && Number.isFinite(d)) delay = d;
    } catch (err) {
      // fn reports its own failures; this only keeps the loop alive.
      if (!isAbort(err)) delay = Math.max(delay, NETWORK_RETRY_MS);
    }
    running = false;
    if (signal.aborted) return;
    if (again) {
      again = false;
      timer = setTimeout(run, 0);
      return;
    }
    timer = setTimeout(run, delay);
  };
  const onVisible = () => {
    if (!document.hidden && !running) run();
  };
  document.addEventListener('visibilitychange', onVisible);
  signal.addEventListener('abort', () => {
    clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVisible);
  }, { once: true });
  run();
  return { now: run };
}

// ---------------------------------------------------------------------------
// Sign-in and shell

let currentView = null; // AbortController of the view on screen

function stopView() {
  if (currentView) currentView.abort();
  currentView = null;
}

function showSignIn(message) {
  stopView();
  document.getElementById('nav').hidden = true;
  document.getElementById('who').hidden = true;
  const view = document.getElementById('view');
  view.hidden = true;
  view.replaceChildren();
  const section = document.getElementById('signin');
  section.hidden = false;
  const msg = document.getElementById('signin-message');
  msg.hidden = !message;
  msg.textContent = message || '';
  document.title = 'Sign in · License Ledger console';
  const input = document.getElementById('signin-token');
  input.value = '';
  if (message) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
  input.focus();
}

function signOut(message, { keepRoute = false } = {}) {
  if (!identity) return; // already signed out (e.g. several requests got 401)
  identity = null;
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage may be unavailable (privacy mode): nothing to remove then.
  }
  resetStatus();
  if (!keepRoute && location.hash !== '#/licenses') {
    history.replaceState(null, '', '#/licenses');
  }
  showSignIn(message);
}

function enterApp(id) {
  identity = id;
  document.getElementById('signin').hidden = true;
  document.getElementById('nav').hidden = false;
  document.getElementById('nav-audit-item').hidden = !id.isAdmin;
  const who = document.getElementById('who');
  who.hidden = false;
  const roles = id.roles.length ? id.roles.map(roleLabel).join(', ') : 'user';
  const text = `${id.sub || 'unknown user'} · ${id.tenant || 'no tenant'} · ${roles}`;
  const el = document.getElementById('signed-in-as');
  el.replaceChildren(visuallyHidden('Signed in as '), text);
  el.title = `Signed in as ${text}`;
  document.getElementById('view').hidden = false;
}

function onSignIn(event) {
  event.preventDefault();
  const input = document.getElementById('signin-token');
  const msg = document.getElementById('signin-message');
  let token = input.value.trim();
  if (/^bearer\s+/i.test(token)) token = token.replace(/^bearer\s+/i, '').trim();
  let id;
  try {
    if (!token) throw new Error('the field is empty');
    id = identityFrom(token);
  } catch (err) {
    msg.hidden = false;
    msg.textContent = `That is not a usable token: ${err.message}.`;
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    return;
  }
  input.value = '';
  input.removeAttribute('aria-invalid');
  msg.hidden = true;
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
  } catch {
    // Without storage the token lives only in this page.
  }
  resetStatus();
  enterApp(id);
  route({ focus: true });
}

// ---------------------------------------------------------------------------
// Routing

function parseRoute() {
  const hash = location.hash.replace(/^#/, '') || '/licenses';
  const parts = hash.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  if (parts.length === 0 || (parts[0] === 'licenses' && parts.length === 1)) return { name: 'licenses' };
  if (parts[0] === 'licenses' && parts.length === 2) return { name: 'license', id: parts[1] };
  if (parts[0] === 'audit' && parts.length === 1) return { name: 'audit' };
  return { name: 'unknown' };
}

function route({ focus = true } = {}) {
  if (!identity) return;
  stopView();
  statusState.problems.clear();
  statusState.info = '';
  renderStatus();
  const controller = new AbortController();
  currentView = controller;
  const r = parseRoute();
  for (const a of document.querySelectorAll('#nav a[data-route]')) {
    const active = a.dataset.route === r.name || (a.dataset.route === 'licenses' && r.name === 'license');
    if (active) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const view = document.getElementById('view');
  view.replaceChildren();
  if (r.name === 'licenses') licensesView(view, controller.signal);
  else if (r.name === 'license') licenseView(view, controller.signal, r.id);
  else if (r.name === 'audit') auditView(view, controller.signal);
  else notFoundView(view);
  if (focus) {
    const h1 = view.querySelector('h1');
    if (h1) h1.focus({ preventScroll: false });
  }
}

function pageTitle(text) {
  document.title = `${text} · License Ledger console`;
  return h('h1', { tabindex: '-1' }, text);
}

function errorNotice(text) {
  return h('p', { class: 'notice notice-error', 'data-testid': 'error' }, text);
}

function notFoundView(view) {
  view.append(
    pageTitle('Page not found'),
    errorNotice('There is no such page in the console.'),
    h('p', {}, h('a', { href: '#/licenses' }, 'Go to the licenses')),
  );
}

// ---------------------------------------------------------------------------
// Seat meter

function seatMeter(label) {
  const meter = h('meter', { min: '0', max: '1', value: '0', 'aria-label': label, class: 'seat-meter' });
  return meter;
}

function updateMeter(meter, inUse, seats, label) {
  const max = Math.max(1, seats);
  meter.max = max;
  meter.value = Math.min(inUse, max);
  meter.low = max * 0.7;
  meter.high = max * 0.9999;
  meter.optimum = 0;
  meter.setAttribute('aria-label', label);
  meter.textContent = `${inUse} of ${seats}`;
  meter.classList.toggle('is-full', inUse >= seats && seats > 0);
}

// ---------------------------------------------------------------------------
// View: the tenant's licenses

function licensesView(view, signal) {
  const lagSummary = h('span', { 'data-testid': 'projection-lag-max' }, '—');
  const tenant = identity.tenant ? ` of ${identity.tenant}` : '';
  const notice = h('div');
  const tbody = h('tbody');
  const table = h('table', { class: 'data-table', 'data-testid': 'licenses-table' },
    h('caption', { class: 'visually-hidden' }, `Licenses${tenant}, with live seat usage`),
    h('thead', {}, headerRow('Product', 'License', 'Seats in use', { text: 'Usage', class: 'col-meter' }, 'Projection lag', 'Status')),
    tbody);
  const empty = h('p', { class: 'muted', hidden: true, 'data-testid': 'no-licenses' }, 'Your tenant has no licenses yet.');
  const loading = h('p', { class: 'muted' }, 'Loading licenses…');
  view.append(
    pageTitle('Licenses'),
    h('p', { class: 'lead' },
      `Floating licenses${tenant}. Seats in use come from the live usage view and refresh every ${POLL_MS / 1000} s. `,
      h('span', { class: 'nowrap' }, 'Largest projection lag: ', lagSummary)),
    notice, loading, empty,
    tableWrap('Licenses table', table),
  );

  const rows = new Map(); // license_id -> { tr, license, cells }
  let licenses = [];
  const lags = new Map();

  function buildRow(lic) {
    const id = String(lic.license_id);
    const product = lic.product || 'Unnamed product';
    const seatsText = h('span', { class: 'seat-count', 'data-testid': 'seats-in-use' }, `… / ${fmtNum(lic.seats)}`);
    const meter = seatMeter(`Seats in use for ${product}: loading`);
    const lag = h('span', { 'data-testid': 'projection-lag' }, '—');
    const statusCell = h('td', { 'data-testid': 'license-status' });
    const tr = h('tr', { 'data-testid': 'license-row', 'data-license-id': id },
      h('th', { scope: 'row' }, h('a', { href: `#/licenses/${encodeURIComponent(id)}`, 'data-testid': 'license-link' }, product)),
      h('td', {}, h('code', { title: id }, shortId(id))),
      h('td', { class: 'num' }, seatsText),
      h('td', { class: 'col-meter' }, meter),
      h('td', { class: 'num' }, lag),
      statusCell);
    const entry = { tr, lic, seatsText, meter, lag, statusCell, product };
    renderStatusCell(entry, Boolean(lic.suspended));
    return entry;
  }

  function renderStatusCell(entry, suspended) {
    const key = suspended ? 'suspended' : 'active';
    if (entry.statusKey === key) return;
    entry.statusKey = key;
    const until = parseTime(entry.lic.valid_until);
    fill(entry.statusCell,
      suspended ? h('span', { class: 'badge badge-danger' }, 'Suspended') : h('span', { class: 'badge badge-ok' }, 'Active'),
      until ? h('span', { class: 'muted small block' }, 'valid until ', timeEl(entry.lic.valid_until, dateFmt)) : null,
    );
  }

  function setLicenses(list) {
    licenses = list;
    const seen = new Set(list.map((l) => String(l.license_id)));
    for (const [id, entry] of rows) {
      if (!seen.has(id)) {
        entry.tr.remove();
        rows.delete(id);
        lags.delete(id);
      }
    }
    list.forEach((lic, i) => {
      const id = String(lic.license_id);
      let entry = rows.get(id);
      if (!entry) {
        entry = buildRow(lic);
        rows.set(id, entry);
      } else {
        entry.lic = lic;
      }
      placeAt(tbody, entry.tr, i); // keeps the server's order
    });
    loading.hidden = true;
    empty.hidden = list.length > 0;
  }

  function updateLagSummary() {
    const values = [...lags.values()];
    setText(lagSummary, values.length ? fmtLag(Math.max(...values)) : '—');
  }

  async function loadList() {
    try {
      const list = await api('/licenses', { signal });
      if (!Array.isArray(list)) throw new ApiError(200, 'Bad response', 'expected a list of licenses');
      notice.replaceChildren();
      clearProblem('licenses');
      setLicenses(list);
      if (!usagePoller) usagePoller = poll(signal, pollUsage, usageInterval);
      return LIST_POLL_MS;
    } catch (err) {
      if (isAbort(err) || err.status === 401) return null;
      loading.hidden = true;
      notice.replaceChildren(errorNotice(describe(err, 'Could not load the licenses')));
      return pollFailure('licenses', err, 'Licenses') ?? NETWORK_RETRY_MS;
    }
  }

  function usageInterval() {
    return Math.max(POLL_MS, Math.ceil((licenses.length / USAGE_REQUESTS_PER_SEC) * 1000));
  }

  async function usageOf(entry) {
    const id = String(entry.lic.license_id);
    try {
      const u = await api(`/licenses/${encodeURIComponent(id)}/usage`, { signal });
      setText(entry.seatsText, `${fmtNum(u.in_use)} / ${fmtNum(u.seats)}`);
      entry.seatsText.removeAttribute('title');
      updateMeter(entry.meter, u.in_use, u.seats, `Seats in use for ${entry.product}: ${u.in_use} of ${u.seats}`);
      setText(entry.lag, fmtLag(u.projection_lag_ms));
      renderStatusCell(entry, Boolean(u.suspended));
      lags.set(id, u.projection_lag_ms);
      return null;
    } catch (err) {
      if (isAbort(err) || err.status === 401) throw err;
      setText(entry.seatsText, `? / ${fmtNum(entry.lic.seats)}`);
      entry.seatsText.title = describe(err, 'Usage');
      return err;
    }
  }

  async function pollUsage() {
    const entries = [...rows.values()];
    const errors = [];
    // At most 4 requests at a time.
    for (let i = 0; i < entries.length; i += 4) {
      const batch = await Promise.all(entries.slice(i, i + 4).map(usageOf));
      errors.push(...batch.filter(Boolean));
      if (signal.aborted) return null;
    }
    updateLagSummary();
    if (errors.length) return pollFailure('usage', errors[0], 'Live usage');
    clearProblem('usage');
    return null;
  }

  let usagePoller = null;
  poll(signal, loadList, LIST_POLL_MS);
}

// ---------------------------------------------------------------------------
// View: one license

function licenseView(view, viewSignal, licenseId) {
  // A child of the view's controller: a 404 or 403 stops this page's polls.
  const local = new AbortController();
  viewSignal.addEventListener('abort', () => local.abort(), { once: true });
  const { signal } = local;
  const admin = identity.isAdmin;
  const enc = encodeURIComponent(licenseId);
  const title = pageTitle('License');
  const header = h('div', { class: 'page-head' },
    h('p', { class: 'crumbs' }, h('a', { href: '#/licenses' }, '← All licenses')),
    title,
    h('p', { class: 'muted' }, 'License ', h('code', { class: 'wrap-anywhere', 'data-testid': 'license-id' }, licenseId)));
  const notice = h('div');
  const body = h('div', { class: 'license-body', hidden: true });
  const loading = h('p', { class: 'muted' }, 'Loading…');
  view.append(header, notice, loading, body);

  // Live summary
  const seatsEl = h('span', { class: 'big-number', 'data-testid': 'seats-in-use' }, '… / …');
  const meter = seatMeter('Seats in use: loading');
  const lagEl = h('span', { class: 'big-number', 'data-testid': 'projection-lag' }, '—');
  const positionEl = h('span', { class: 'muted small block' });
  const suspendedEl = h('span', { 'data-testid': 'license-status' });
  const denialsTodayEl = h('span', { class: 'big-number', 'data-testid': 'denials-today' }, '—');
  const summary = h('section', { class: 'cards', 'aria-label': 'Live usage' },
    h('div', { class: 'card' }, h('h2', { class: 'card-title' }, 'Seats in use'), seatsEl, meter),
    h('div', { class: 'card' }, h('h2', { class: 'card-title' }, 'Projection lag'), lagEl, positionEl),
    h('div', { class: 'card' }, h('h2', { class: 'card-title' }, 'Status'), suspendedEl),
    h('div', { class: 'card' }, h('h2', { class: 'card-title' }, 'Denials today (UTC)'), denialsTodayEl));
  body.append(summary);

  const sessions = sessionsSection(signal, licenseId, admin, () => usagePoller && usagePoller.now());
  body.append(sessions.section);

  let report = null;
  let denials = null;
  if (admin) {
    report = reportSection(signal, licenseId);
    denials = denialsSection(signal, licenseId);
    body.append(report.section, denials.section);
  }

  // Product name and validity (the list is the tenant's; a license missing
  // from it is settled by the usage call's answer).
  api('/licenses', { signal }).then((list) => {
    const lic = Array.isArray(list) ? list.find((l) => String(l.license_id) === licenseId) : null;
    if (lic && lic.product) {
      setText(title, lic.product);
      document.title = `${lic.product} · License Ledger console`;
    }
  }).catch(() => {
    // The name is cosmetic; the usage poll reports real failures.
  });

  let started = false;
  let lastSuspended = null;

  async function pollUsage() {
    try {
      const u = await api(`/licenses/${enc}/usage`, { signal });
      clearProblem('usage');
      notice.replaceChildren();
      loading.hidden = true;
      body.hidden = false;
      setText(seatsEl, `${fmtNum(u.in_use)} / ${fmtNum(u.seats)}`);
      updateMeter(meter, u.in_use, u.seats, `Seats in use: ${u.in_use} of ${u.seats}`);
      setText(lagEl, fmtLag(u.projection_lag_ms));
      setText(positionEl, `as of log position ${fmtNum(u.as_of_position)} of ${fmtNum(u.log_head_position)}`);
      setText(denialsTodayEl, fmtNum(u.denials_today));
      if (lastSuspended !== Boolean(u.suspended)) {
        lastSuspended = Boolean(u.suspended);
        suspendedEl.replaceChildren(lastSuspended
          ? h('span', { class: 'badge badge-danger' }, 'Suspended')
          : h('span', { class: 'badge badge-ok' }, 'Active'));
      }
      if (!admin) sessions.render(u.sessions || []);
      if (!started) {
        started = true;
        sessions.start();
        if (report) report.start();
        if (denials) denials.start();
      }
      return null;
    } catch (err) {
      if (isAbort(err) || err.status === 401) return null;
      if (err.status === 404 || err.status === 403) {
        // Settled by the server: stop everything on this page.
        loading.hidden = true;
        body.hidden = true;
        body.replaceChildren();
        setText(title, err.status === 404 ? 'License not found' : 'Not allowed');
        document.title = `${title.textContent} · License Ledger console`;
        notice.replaceChildren(errorNotice(err.status === 404
          ? 'License not found: there is no license with this id in your tenant.'
          : `You are not allowed to see this license${err.detail ? ` (${err.detail})` : ''}.`));
        local.abort();
        return null;
      }
      if (!started) {
        loading.hidden = true;
        notice.replaceChildren(errorNotice(describe(err, 'Could not load the license')));
      }
      return pollFailure('usage', err, 'Live usage');
    }
  }

  const usagePoller = poll(signal, pollUsage, POLL_MS);
}

/** The sessions table: an admin's (every session, with force release) or a user's own. */
function sessionsSection(signal, licenseId, admin, onReleased) {
  const enc = encodeURIComponent(licenseId);
  const heading = h('h2', { tabindex: '-1', id: 'sessions-title' }, admin ? 'Live sessions' : 'Your sessions');
  const lagNote = h('span', { class: 'muted small' });
  const tbody = h('tbody');
  const emptyRow = h('tr', { class: 'empty-row' }, h('td', { colspan: admin ? '6' : '3', class: 'muted' }, 'No live sessions.'));
  const table = h('table', { class: 'data-table', 'data-testid': 'sessions-table' },
    h('caption', { class: 'visually-hidden' }, admin ? 'Live sessions of this license' : 'Your live sessions of this license'),
    h('thead', {}, admin
      ? headerRow('User', 'Hardware ID', 'Since', 'Last heartbeat', 'Token expiry', { text: 'Actions', class: 'col-actions' })
      : headerRow('User', 'Hardware ID', 'Deadline')),
    tbody);
  tbody.append(emptyRow);
  const section = h('section', { class: 'panel', 'aria-labelledby': 'sessions-title' },
    h('div', { class: 'panel-head' }, heading, lagNote),
    admin ? null : h('p', { class: 'muted small' }, 'Only your own sessions are listed; a tenant admin sees everyone’s.'),
    tableWrap('Sessions table', table));

  const rows = new Map(); // session_id -> { tr, cells, actionTd, actionKey, session }
  let pending = null; // session awaiting confirmation
  let releasing = null;

  function actionKey(id) {
    if (releasing === id) return 'releasing';
    if (pending === id) return 'pending';
    return releasing ? 'idle-disabled' : 'idle';
  }

  function renderActions(entry, { focus = false } = {}) {
    const id = entry.session.session_id;
    const key = actionKey(id);
    if (entry.actionKey === key && !focus) return;
    entry.actionKey = key;
    const who = `${entry.session.user_id} on ${entry.session.hardware_id}`;
    const cell = entry.actionTd;
    if (key === 'releasing') {
      cell.replaceChildren(h('span', { class: 'muted' }, 'Releasing…'));
    } else if (key === 'pending') {
      const confirm = h('button', {
        type: 'button', class: 'btn btn-danger btn-small', 'data-testid': 'confirm-release',
        'aria-label': `Confirm release of the session of ${who}`,
        onclick: () => release(entry.session),
      }, 'Confirm release');
      const cancel = h('button', {
        type: 'button', class: 'btn btn-small', 'data-testid': 'cancel-release',
        onclick: () => setPending(null, entry),
      }, 'Cancel');
      const group = h('div', {
        class: 'confirm-group', role: 'group', 'aria-label': `Release the session of ${who}?`,
        onkeydown: (e) => {
          if (e.key === 'Escape') {
            e.preventDefault();
            setPending(null, entry);
          }
        },
      }, h('span', { class: 'confirm-q', 'aria-hidden': 'true' }, 'Release?'), confirm, cancel);
      cell.replaceChildren(group);
      if (focus) confirm.focus();
    } else {
      const btn = h('button', {
        type: 'button', class: 'btn btn-small btn-danger-outline', 'data-testid': 'force-release',
        'aria-label': `Force release the session of ${who}`,
        disabled: key === 'idle-disabled',
        onclick: () => setPending(id, entry),
      }, 'Force release');
      cell.replaceChildren(btn);
      if (focus) btn.focus();
    }
  }

  function setPending(id, entry) {
    const previous = pending;
    pending = id;
    for (const e of rows.values()) {
      const isTarget = e === entry;
      if (e.session.session_id === previous || e.session.session_id === id) {
        renderActions(e, { focus: isTarget });
      }
    }
  }

  async function release(session) {
    const who = `${session.user_id} on ${session.hardware_id}`;
    releasing = session.session_id;
    pending = null;
    for (const e of rows.values()) renderActions(e);
    try {
      await api(`/licenses/release/${encodeURIComponent(session.session_id)}`, { method: 'DELETE', signal });
      announce(`Released the session of ${who}.`);
    } catch (err) {
      if (isAbort(err) || err.status === 401) return;
      if (err.status === 404) announce(`The session of ${who} had already ended.`);
      else announce(describe(err, `Could not release the session of ${who}`));
    } finally {
      releasing = null;
    }
    if (signal.aborted) return;
    const focusedInside = section.contains(document.activeElement) || document.activeElement === document.body;
    for (const e of rows.values()) renderActions(e);
    if (poller) poller.now();
    if (onReleased) onReleased();
    if (focusedInside) heading.focus();
  }

  function render(list) {
    const seen = new Set(list.map((x) => String(x.session_id)));
    for (const [id, entry] of rows) {
      if (!seen.has(id)) {
        const hadFocus = entry.tr.contains(document.activeElement);
        entry.tr.remove();
        rows.delete(id);
        if (pending === id) pending = null;
        if (hadFocus) heading.focus();
      }
    }
    if (list.length) emptyRow.remove();
    for (const [i, sess] of list.entries()) {
      const id = String(sess.session_id);
      let entry = rows.get(id);
      if (!entry) {
        const cells = admin
          ? { user: h('th', { scope: 'row' }), hw: h('td'), since: h('td'), beat: h('td'), exp: h('td') }
          : { user: h('th', { scope: 'row' }), hw: h('td'), deadline: h('td') };
        const actionTd = admin ? h('td', { class: 'col-actions' }) : null;
        const tr = h('tr', { 'data-testid': 'session-row', 'data-session-id': id },
          Object.values(cells), actionTd);
        entry = { tr, cells, actionTd, actionKey: null, session: sess, sig: '' };
        rows.set(id, entry);
      }
      entry.session = sess;
      placeAt(tbody, entry.tr, i);
      const sig = JSON.stringify([sess.user_id, sess.hardware_id, sess.since, sess.last_heartbeat, sess.token_expires_at, sess.deadline]);
      if (sig !== entry.sig) {
        entry.sig = sig;
        const c = entry.cells;
        setText(c.user, sess.user_id);
        c.hw.replaceChildren(h('code', {}, sess.hardware_id));
        if (admin) {
          c.since.replaceChildren(timeEl(sess.since));
          c.beat.replaceChildren(timeEl(sess.last_heartbeat));
          c.exp.replaceChildren(timeEl(sess.token_expires_at));
        } else {
          c.deadline.replaceChildren(timeEl(sess.deadline));
        }
      }
      if (admin) renderActions(entry);
    }
    if (rows.size === 0 && !emptyRow.isConnected) tbody.append(emptyRow);
  }

  let poller = null;
  async function pollSessions() {
    try {
      const v = await api(`/admin/licenses/${enc}/sessions`, { signal });
      clearProblem('sessions');
      render(Array.isArray(v.sessions) ? v.sessions : []);
      setText(lagNote, `projection lag: ${fmtLag(v.projection_lag_ms)}`);
      return null;
    } catch (err) {
      return pollFailure('sessions', err, 'Sessions');
    }
  }

  return {
    section,
    render,
    start() {
      if (admin && !poller) poller = poll(signal, pollSessions, POLL_MS);
    },
  };
}

/** The usage report: window select, numbers and two charts. */
function reportSection(signal, licenseId) {
  const enc = encodeURIComponent(licenseId);
  const select = h('select', { id: 'report-window', 'data-testid': 'report-window' },
    WINDOWS.map((w) => h('option', { value: w.value, selected: w.value === 'day' }, w.label)));
  const refresh = h('button', { type: 'submit', class: 'btn btn-small', 'data-testid': 'refresh-report' }, 'Refresh');
  const form = h('form', { class: 'inline-form', onsubmit: (e) => { e.preventDefault(); reload(); } },
    h('label', { for: 'report-window' }, 'Window'), select, refresh);
  select.addEventListener('change', () => reload());
  const range = h('p', { class: 'muted small', 'data-testid': 'report-range' });
  const notice = h('div');
  const stats = h('dl', { class: 'stats' });
  const seriesFig = h('figure', { class: 'chart' }, h('figcaption', {}, 'Seats in use over time',
    h('span', { class: 'legend', 'aria-hidden': 'true' },
      h('span', { class: 'legend-item' }, 'in use'), h('span', { class: 'legend-item limit' }, 'seat limit'))));
  const denialFig = h('figure', { class: 'chart' }, h('figcaption', {}, 'Denials by reason'));
  const perDay = h('div');
  const perUser = h('div');
  const content = h('div', { class: 'report-content' }, range, stats,
    h('div', { class: 'charts' }, seriesFig, denialFig),
    h('div', { class: 'two-col' }, perDay, perUser));
  const heading = h('h2', { id: 'usage-title' }, 'Usage');
  const section = h('section', { class: 'panel', 'aria-labelledby': 'usage-title', 'data-testid': 'usage-section' },
    h('div', { class: 'panel-head' }, heading, form), notice, content);

  let requestCtl = null;
  let lastReport = null;
  let poller = null;
  let lastSeriesWidth = 0;

  function windowMs() {
    return (WINDOWS.find((w) => w.value === select.value) || WINDOWS[1]).ms;
  }

  async function load() {
    if (requestCtl) requestCtl.abort();
    const ctl = new AbortController();
    requestCtl = ctl;
    const onAbort = () => ctl.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    const to = new Date();
    const from = new Date(to.getTime() - windowMs());
    section.setAttribute('aria-busy', 'true');
    try {
      const r = await api(`/admin/licenses/${enc}/report?from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`, { signal: ctl.signal });
      notice.replaceChildren();
      clearProblem('report');
      lastReport = r;
      renderReport(r);
      return null;
    } catch (err) {
      if (isAbort(err) || err.status === 401) return null;
      notice.replaceChildren(errorNotice(describe(err, 'Could not load the usage report')));
      return pollFailure('report', err, 'Usage report');
    } finally {
      signal.removeEventListener('abort', onAbort);
      if (requestCtl === ctl) {
        requestCtl = null;
        section.removeAttribute('aria-busy');
      }
    }
  }

  function reload() {
    if (poller) poller.now();
  }

  function stat(label, value, testid, note) {
    return h('div', { class: 'stat' },
      h('dt', {}, label),
      h('dd', {}, h('span', { class: 'stat-value', 'data-testid': testid }, value), note ? h('span', { class: 'muted small block' }, note) : null));
  }

  function renderReport(r) {
    setText(range, `From ${fmtFullTime(r.from)} to ${fmtFullTime(r.to)} · ${plural(r.seats, 'seat', 'seats')}`);
    const peaks = Array.isArray(r.peak_per_day) ? r.peak_per_day : [];
    const peak = peaks.length ? Math.max(...peaks.map((p) => p.peak)) : 0;
    const seatHours = Array.isArray(r.seat_hours) ? r.seat_hours : [];
    const seatHoursTotal = seatHours.reduce((a, u) => a + (Number(u.seat_hours) || 0), 0);
    const denialEntries = Object.entries(r.denials && typeof r.denials === 'object' ? r.denials : {})
      .filter(([, n]) => typeof n === 'number');
    const denialTotal = denialEntries.reduce((a, [, n]) => a + n, 0);
    const q = r.queue || {};
    stats.replaceChildren(
      stat('Peak concurrency', `${fmtNum(peak)} / ${fmtNum(r.seats)}`, 'peak'),
      stat('Seat-hours', fmtDecimal(seatHoursTotal), 'seat-hours', plural(seatHours.length, 'user', 'users')),
      stat('Acquisitions', fmtNum(r.acquisitions), 'acquisitions',
        `${fmtNum(r.overdraft_acquisitions)} overdraft · ${fmtNum(r.borrowed_acquisitions)} borrowed`),
      stat('Denials', fmtNum(denialTotal), 'usage-denials'),
      stat('Releases', fmtNum(r.releases), 'releases', `${plural(r.expiries, 'session', 'sessions')} expired`),
      stat('Queued', fmtNum(q.joined), 'queue',
        `${fmtNum(q.granted)} granted · ${fmtNum(q.timed_out)} timed out · ${fmtNum(q.cancelled)} cancelled · wait mean ${fmtSecs(q.mean_wait_secs)}, max ${fmtSecs(q.max_wait_secs)}`),
    );
    renderSeries(r);
    renderDenialChart(denialEntries);
    perDay.replaceChildren(h('h3', {}, 'Peak per day'), peaks.length
      ? tableWrap('Peak per day', h('table', { class: 'data-table compact' },
        h('thead', {}, headerRow('Day', 'Peak', 'Seats')),
        h('tbody', {}, peaks.map((p) => h('tr', {},
          h('th', { scope: 'row' }, String(p.day)), h('td', { class: 'num' }, fmtNum(p.peak)), h('td', { class: 'num' }, fmtNum(p.seats)))))))
      : h('p', { class: 'muted' }, 'No days in this window.'));
    perUser.replaceChildren(h('h3', {}, 'Seat-hours by user'), seatHours.length
      ? tableWrap('Seat-hours by user', h('table', { class: 'data-table compact' },
        h('thead', {}, headerRow('User', 'Seat-hours', 'Sessions')),
        h('tbody', {}, seatHours.map((u) => h('tr', {},
          h('th', { scope: 'row' }, String(u.user)), h('td', { class: 'num' }, fmtDecimal(u.seat_hours)), h('td', { class: 'num' }, fmtNum(u.sessions)))))))
      : h('p', { class: 'muted' }, 'Nobody held a seat in this window.'));
  }

  function renderSeries(r) {
    const width = Math.max(280, Math.round(seriesFig.clientWidth || 560));
    lastSeriesWidth = width;
    const chart = seriesChart(r, width);
    const old = seriesFig.querySelector('svg, .chart-empty');
    if (old) old.replaceWith(chart);
    else seriesFig.append(chart);
  }

  function renderDenialChart(entries) {
    const width = Math.max(280, Math.round(denialFig.clientWidth || 400));
    const chart = denialChart(entries, width);
    const old = denialFig.querySelector('svg, .chart-empty');
    if (old) old.replaceWith(chart);
    else denialFig.append(chart);
  }

  // Redraw the charts at the new width (their text stays at a readable size).
  if (typeof ResizeObserver === 'function') {
    let raf = 0;
    const ro = new ResizeObserver(() => {
      cancelAnimationFrame(raf);
      raf = requestAnimationFrame(() => {
        if (!lastReport || signal.aborted) return;
        if (Math.abs(Math.round(seriesFig.clientWidth) - lastSeriesWidth) >= 2) renderReport(lastReport);
      });
    });
    ro.observe(seriesFig);
    signal.addEventListener('abort', () => {
      ro.disconnect();
      cancelAnimationFrame(raf);
    }, { once: true });
  }

  return {
    section,
    start() {
      if (!poller) poller = poll(signal, load, REPORT_POLL_MS);
    },
  };
}

let chartSeq = 0;

/** Step/area chart of the report's series, with the seat limit dashed. */
function seriesChart(r, W) {
  const points = (Array.isArray(r.series) ? r.series : [])
    .map((p) => ({ t: Date.parse(p.at), u: Number(p.in_use), s: Number(p.seats) }))
    .filter((p) => Number.isFinite(p.t) && Number.isFinite(p.u))
    .sort((a, b) => a.t - b.t);
  if (points.length === 0) {
    return h('p', { class: 'chart-empty muted' }, 'No seat changes recorded in this window.');
  }
  let t0 = Date.parse(r.from);
  let t1 = Date.parse(r.to);
  if (!Number.isFinite(t0)) t0 = points[0].t;
  if (!Number.isFinite(t1)) t1 = points[points.length - 1].t;
  if (t1 <= t0) t1 = t0 + 1;
  const H = 200;
  const m = { l: 34, r: 12, t: 12, b: 28 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const yMax = Math.max(1, ...points.map((p) => p.u), ...points.map((p) => (Number.isFinite(p.s) ? p.s : 0)));
  const x = (t) => m.l + (Math.min(Math.max(t, t0), t1) - t0) / (t1 - t0) * pw;
  const y = (v) => m.t + ph - (v / yMax) * ph;
  const f = (n) => n.toFixed(1);

  const step = (key) => {
    let d = `M${f(x(points[0].t))},${f(y(points[0][key]))}`;
    for (let i = 1; i < points.length; i += 1) {
      d += `H${f(x(points[i].t))}V${f(y(points[i][key]))}`;
    }
    return `${d}H${f(x(t1))}`;
  };
  const line = step('u');
  const area = `${line}V${f(y(0))}H${f(x(points[0].t))}Z`;
  const hasSeats = points.every((p) => Number.isFinite(p.s));

  const id = `chart-${(chartSeq += 1)}`;
  const peak = Math.max(...points.map((p) => p.u));
  const seatsNow = points[points.length - 1].s;
  const desc = `Step chart of seats in use from ${fmtTime(r.from)} to ${fmtTime(r.to)}: `
    + `${points.length} changes, highest ${peak}, last ${points[points.length - 1].u}`
    + `${hasSeats ? ` of ${seatsNow} seats (dashed line: the seat limit)` : ''}.`;

  const ticks = [0, yMax];
  if (yMax >= 2 && yMax % 2 === 0) ticks.splice(1, 0, yMax / 2);
  const svg = s('svg', {
    class: 'chart-svg', viewBox: `0 0 ${W} ${H}`, width: W, height: H,
    role: 'img', 'aria-labelledby': `${id}-t ${id}-d`, 'data-testid': 'series-chart',
  },
  s('title', { id: `${id}-t` }, 'Seats in use over time'),
  s('desc', { id: `${id}-d` }, desc),
  ticks.map((v) => [
    s('line', { class: 'grid', x1: m.l, x2: W - m.r, y1: f(y(v)), y2: f(y(v)) }),
    s('text', { class: 'axis-label', x: m.l - 6, y: f(y(v)), 'text-anchor': 'end', 'dominant-baseline': 'middle' }, String(v)),
  ]),
  s('path', { class: 'area', d: area }),
  s('path', { class: 'line', d: line }),
  hasSeats ? s('path', { class: 'limit', d: step('s') }) : null,
  s('text', { class: 'axis-label', x: m.l, y: H - 8, 'text-anchor': 'start' }, shortDateTimeFmt.format(new Date(t0))),
  s('text', { class: 'axis-label', x: W - m.r, y: H - 8, 'text-anchor': 'end' }, shortDateTimeFmt.format(new Date(t1))));
  return svg;
}

/** Horizontal bar chart of the report's denials by reason. */
function denialChart(entries, W) {
  const rows = entries.filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  if (rows.length === 0) return h('p', { class: 'chart-empty muted' }, 'No denials in this window.');
  const labelW = Math.min(150, Math.round(W * 0.4));
  const countW = 44;
  const barH = 22;
  const gap = 10;
  const H = rows.length * (barH + gap) + gap;
  const max = Math.max(...rows.map(([, n]) => n));
  const id = `chart-${(chartSeq += 1)}`;
  const desc = `Bar chart of denials by reason: ${rows.map(([k, n]) => `${reasonLabel(k)} (${k}) ${n}`).join('; ')}.`;
  return s('svg', {
    class: 'chart-svg', viewBox: `0 0 ${W} ${H}`, width: W, height: H,
    role: 'img', 'aria-labelledby': `${id}-t ${id}-d`, 'data-testid': 'denials-chart',
  },
  s('title', { id: `${id}-t` }, 'Denials by reason'),
  s('desc', { id: `${id}-d` }, desc),
  rows.map(([k, n], i) => {
    const yy = gap + i * (barH + gap);
    const bw = Math.max(2, ((W - labelW - countW) * n) / max);
    return [
      s('text', { class: 'bar-label', x: labelW - 8, y: yy + barH / 2, 'text-anchor': 'end', 'dominant-baseline': 'middle' }, reasonLabel(k)),
      s('rect', { class: 'bar', x: labelW, y: yy, width: bw.toFixed(1), height: barH, rx: 3 }),
      s('text', { class: 'bar-value', x: labelW + bw + 6, y: yy + barH / 2, 'dominant-baseline': 'middle' }, fmtNum(n)),
    ];
  }));
}

/** Recent denials (newest first), polled. */
function denialsSection(signal, licenseId) {
  const enc = encodeURIComponent(licenseId);
  const tbody = h('tbody');
  const table = h('table', { class: 'data-table', 'data-testid': 'denials-table' },
    h('caption', { class: 'visually-hidden' }, 'The 20 most recent denied acquires, newest first'),
    h('thead', {}, headerRow('Time', 'User', 'Hardware ID', 'Reason')),
    tbody);
  const section = h('section', { class: 'panel', 'aria-labelledby': 'denials-title' },
    h('div', { class: 'panel-head' }, h('h2', { id: 'denials-title' }, 'Recent denials'), h('span', { class: 'muted small' }, 'newest first, last 20')),
    tableWrap('Recent denials table', table));
  let sig = null;

  function render(list) {
    const next = JSON.stringify(list.map((d) => [d.position, d.at, d.user_id, d.hardware_id, d.reason]));
    if (next === sig) return;
    sig = next;
    if (list.length === 0) {
      tbody.replaceChildren(h('tr', { class: 'empty-row' }, h('td', { colspan: '4', class: 'muted' }, 'No denials recorded.')));
      return;
    }
    tbody.replaceChildren(...list.map((d) => h('tr', { 'data-testid': 'denial-row', 'data-position': d.position },
      h('td', {}, timeEl(d.at)),
      h('th', { scope: 'row' }, String(d.user_id ?? '')),
      h('td', {}, h('code', {}, String(d.hardware_id ?? ''))),
      h('td', { 'data-testid': 'denial-reason' },
        h('span', { class: 'badge badge-warn' }, reasonLabel(d.reason)), ' ', h('code', { class: 'small' }, String(d.reason))))));
  }

  async function load() {
    try {
      const v = await api(`/admin/licenses/${enc}/denials?limit=20`, { signal });
      clearProblem('denials');
      render(Array.isArray(v.denials) ? v.denials : []);
      return null;
    } catch (err) {
      return pollFailure('denials', err, 'Recent denials');
    }
  }

  let poller = null;
  return {
    section,
    start() {
      if (!poller) poller = poll(signal, load, POLL_MS);
    },
  };
}

// ---------------------------------------------------------------------------
// View: audit

function auditView(view, signal) {
  view.append(pageTitle('Audit'));
  if (!identity.isAdmin) {
    view.append(errorNotice('The audit view is for tenant admins (the license-admin role). Your token does not carry that role.'));
    return;
  }
  const notice = h('div');
  const head = h('span', { 'data-testid': 'log-head' }, '—');
  const tenantHead = h('span', { 'data-testid': 'tenant-head' });
  const checkpoint = h('div', { 'data-testid': 'checkpoint' }, h('p', { class: 'muted' }, 'Loading…'));
  const verification = h('div', { 'data-testid': 'last-verification' }, h('p', { class: 'muted' }, 'Loading…'));
  const result = h('div', { class: 'verification-result', 'data-testid': 'verification-result', role: 'status', 'aria-live': 'polite' });
  const runBtn = h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'run-verification' }, 'Run verification');
  view.append(
    h('p', { class: 'lead' }, 'Every stream of the log is hash-chained, and the signer signs checkpoints of the whole log. Log head position: ', head, tenantHead, '.'),
    notice,
    h('div', { class: 'cards cards-2' },
      h('section', { class: 'card', 'aria-labelledby': 'cp-title' }, h('h2', { id: 'cp-title', class: 'card-title' }, 'Last checkpoint'), checkpoint),
      h('section', { class: 'card', 'aria-labelledby': 'lv-title' }, h('h2', { id: 'lv-title', class: 'card-title' }, 'Last verification'), verification)),
    h('section', { class: 'panel', 'aria-labelledby': 'run-title' },
      h('h2', { id: 'run-title' }, 'Verify now'),
      h('p', { class: 'muted' }, 'Re-reads your tenant’s license and session streams on the server and checks every hash chain and stream head. Checkpoint signatures are checked offline by the ledger verify command.'),
      runBtn, result),
  );

  const dl = (pairs) => h('dl', { class: 'kv' }, pairs.map(([k, v, testid]) => [h('dt', {}, k), h('dd', { 'data-testid': testid }, v)]));

  function verificationDetails(v) {
    const problems = Array.isArray(v.problems) ? v.problems : [];
    return [
      dl([
        ['Result', v.ok ? h('span', { class: 'badge badge-ok' }, 'OK') : h('span', { class: 'badge badge-danger' }, 'Failed'), 'verification-ok'],
        ['Started', timeEl(v.started_at)],
        ['Finished', timeEl(v.finished_at)],
        ['Streams', fmtNum(v.streams)],
        ['Events', fmtNum(v.events)],
      ]),
      problems.length ? [h('h3', { class: 'small-heading' }, `Problems (${problems.length})`),
        h('ul', { class: 'problems' }, problems.map((p) => h('li', {}, String(p))))] : null,
    ];
  }

  function render(a) {
    setText(head, fmtNum(a.log_head_position));
    setText(tenantHead, typeof a.tenant_head_position === 'number'
      ? `; your tenant’s latest event: ${a.tenant_head_position > 0 ? fmtNum(a.tenant_head_position) : 'none yet'}` : '');
    const cp = a.last_checkpoint;
    checkpoint.replaceChildren(cp ? dl([
      ['Up to position', fmtNum(cp.up_to_position)],
      ['Signed at', timeEl(cp.signed_at)],
      ['Key id', h('code', { class: 'wrap-anywhere' }, String(cp.key_id ?? ''))],
      ['Chain head', h('code', { class: 'wrap-anywhere small' }, String(cp.chain_head ?? ''))],
      ['Covers your latest event', cp.covers_tenant
        ? h('span', { class: 'badge badge-ok' }, 'Yes')
        : h('span', { class: 'badge badge-warn' }, 'Not yet'), 'checkpoint-covers'],
    ]) : h('p', { class: 'muted' }, 'No checkpoint has been signed yet.'));
    const v = a.last_verification;
    fill(verification, v ? verificationDetails(v) : h('p', { class: 'muted' }, 'Never verified.'));
  }

  async function load() {
    try {
      const a = await api('/admin/audit', { signal });
      clearProblem('audit');
      notice.replaceChildren();
      render(a);
      return null;
    } catch (err) {
      if (isAbort(err) || err.status === 401) return null;
      if (err.status === 403 || err.status === 404) {
        notice.replaceChildren(errorNotice(describe(err, 'Audit')));
        checkpoint.replaceChildren();
        verification.replaceChildren();
        return 60000;
      }
      return pollFailure('audit', err, 'Audit');
    }
  }

  const poller = poll(signal, load, AUDIT_POLL_MS);

  runBtn.addEventListener('click', async () => {
    if (runBtn.disabled) return;
    runBtn.disabled = true;
    runBtn.setAttribute('aria-busy', 'true');
    runBtn.textContent = 'Verifying…';
    result.className = 'verification-result';
    result.replaceChildren(h('p', {}, 'Verification running…'));
    try {
      const v = await api('/admin/audit/verifications', { method: 'POST', signal });
      const problems = Array.isArray(v.problems) ? v.problems : [];
      if (v.ok) {
        result.className = 'verification-result is-ok';
        result.replaceChildren(h('p', {}, `Verified: OK — ${fmtNum(v.streams)} streams, ${fmtNum(v.events)} events`));
      } else {
        result.className = 'verification-result is-failed';
        result.replaceChildren(
          h('p', {}, `Verification failed — ${fmtNum(problems.length)} problem${problems.length === 1 ? '' : 's'} in ${fmtNum(v.streams)} streams, ${fmtNum(v.events)} events:`),
          h('ul', { class: 'problems' }, problems.map((p) => h('li', {}, String(p)))));
      }
      poller.now();
    } catch (err) {
      if (isAbort(err) || err.status === 401) return;
      result.className = 'verification-result is-failed';
      result.replaceChildren(h('p', {}, describe(err, 'The verification could not run')));
    } finally {
      if (!signal.aborted) {
        runBtn.disabled = false;
        runBtn.removeAttribute('aria-busy');
        runBtn.textContent = 'Run verification';
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Start

function start() {
  document.getElementById('signin-form').addEventListener('submit', onSignIn);
  document.getElementById('signout').addEventListener('click', () => {
    signOut('');
    announce('Signed out.');
  });
  window.addEventListener('hashchange', () => route({ focus: true }));
  // Nothing may end as an unhandled rejection; report it in the status line.
  // (It still reaches the browser's console, where tests and developers see it.)
  window.addEventListener('unhandledrejection', (e) => {
    if (isAbort(e.reason)) {
      e.preventDefault();
      return;
    }
    setProblem('unexpected', `Unexpected error: ${e.reason && e.reason.message ? e.reason.message : String(e.reason)}`);
  });

  let saved = null;
  try {
    saved = sessionStorage.getItem(TOKEN_KEY);
  } catch {
    saved = null;
  }
  if (saved) {
    try {
      enterApp(identityFrom(saved));
      route({ focus: false });
      return;
    } catch {
      try {
        sessionStorage.removeItem(TOKEN_KEY);
      } catch {
        // ignore
      }
    }
  }
  showSignIn('');
}

start();
