// The signed-in identity, the status line, the API client and the poll loop.

import { ADMIN_ROLE, setText } from './dom.js';

export const TOKEN_KEY = 'll-token';
export const API = '/api/v1';
export const POLL_MS = 2000;
export const AUDIT_POLL_MS = 10000;
export const REPORT_POLL_MS = 15000;
export const LIST_POLL_MS = 30000;
export const NETWORK_RETRY_MS = 5000;
// Budget for the licenses view's per-license usage polls (the server limits
// each user to a few hundred requests a minute).
export const USAGE_REQUESTS_PER_SEC = 4;

// ---------------------------------------------------------------------------
// Token and claims

/** Decodes a JWT's payload (base64url JSON). No verification: the server verifies. */
export function decodeJwt(token) {
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

export function identityFrom(token) {
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

export function renderStatus() {
  const el = document.getElementById('status');
  const problems = [...statusState.problems.values()];
  const text = problems.length ? problems[problems.length - 1] : statusState.info;
  el.classList.toggle('is-error', problems.length > 0);
  el.classList.toggle('is-empty', !text);
  setText(el, text);
}

/** Shows an informational message (e.g. the outcome of an action). */
export function announce(message) {
  statusState.info = message;
  renderStatus();
}

/** Shows a problem of one source (a poll) until that source succeeds again. */
export function setProblem(source, message) {
  if (statusState.problems.get(source) === message) return;
  statusState.problems.delete(source);
  statusState.problems.set(source, message);
  renderStatus();
}

export function clearProblem(source) {
  if (statusState.problems.delete(source)) renderStatus();
}

export function resetStatus() {
  statusState.info = '';
  statusState.problems.clear();
  renderStatus();
}

// ---------------------------------------------------------------------------
// API

export class ApiError extends Error {
  constructor(status, title, detail, retryAfterSecs, body) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.retryAfterSecs = retryAfterSecs;
    this.body = body;
  }
}

export function isAbort(err) {
  return err && err.name === 'AbortError';
}

let identity = null;

/** The signed-in identity ({ token, sub, tenant, roles, isAdmin }) or null. */
export function getIdentity() {
  return identity;
}

export function setIdentity(id) {
  identity = id;
}

// Called when the server answers 401 (the token is not accepted).
let unauthorizedHandler = null;

/** Sets what happens when the server does not accept the token: fn(message, { keepRoute }). */
export function onUnauthorized(fn) {
  unauthorizedHandler = fn;
}

/** Calls the API with the bearer token. Resolves to the JSON body (null for 204). */
export async function api(path, { method = 'GET', signal } = {}) {
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
  if (res.status === 401 && unauthorizedHandler) {
    unauthorizedHandler(`The server did not accept your token${detail ? ` (${detail})` : ''}. It may have expired: sign in again.`, { keepRoute: true });
  }
  throw err;
}

/** A readable sentence for an API error. */
export function describe(err, what) {
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
export function pollFailure(source, err, what) {
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
export function poll(signal, fn, interval) {
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

