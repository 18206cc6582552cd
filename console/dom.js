// Element helpers, formatting and the small view helpers every view uses.
// All API text reaches the page through textContent / attributes, never
// innerHTML.

export const ADMIN_ROLE = 'license-admin';
export const VENDOR_ROLE = 'license-vendor';
const SVG_NS = 'http://www.w3.org/2000/svg';

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
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Creates an SVG element. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null && v !== false) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children (skipping null/false, unlike replaceChildren). */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/**
 * Puts child at index i of parent unless it is there already. (Moving a node
 * that holds focus would drop the focus, so unchanged rows stay put.)
 */
export function placeAt(parent, child, i) {
  const at = parent.children[i] || null;
  if (at !== child) parent.insertBefore(child, at);
}

export function setText(el, text) {
  const t = String(text);
  if (el.textContent !== t) el.textContent = t;
}

export function visuallyHidden(text) {
  return h('span', { class: 'visually-hidden' }, text);
}

/** A table in a horizontally scrollable, keyboard-focusable wrapper. */
export function tableWrap(label, table) {
  return h('div', { class: 'table-wrap', role: 'region', 'aria-label': label, tabindex: '0' }, table);
}

export function headerRow(...names) {
  return h('tr', {}, names.map((n) => (typeof n === 'string'
    ? h('th', { scope: 'col' }, n)
    : h('th', { scope: 'col', class: n.class || '' }, n.text))));
}

// ---------------------------------------------------------------------------
// Formatting

const numberFmt = new Intl.NumberFormat(undefined);
const decimalFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

export function fmtNum(n) {
  return typeof n === 'number' && Number.isFinite(n) ? numberFmt.format(n) : '—';
}

export function fmtDecimal(n) {
  return typeof n === 'number' && Number.isFinite(n) ? decimalFmt.format(n) : '—';
}

export function fmtSecs(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '—';
  if (n < 120) return `${decimalFmt.format(n)} s`;
  if (n < 7200) return `${decimalFmt.format(n / 60)} min`;
  return `${decimalFmt.format(n / 3600)} h`;
}

export function fmtLag(ms) {
  return typeof ms === 'number' && Number.isFinite(ms) ? `${numberFmt.format(ms)} ms` : '—';
}

export function parseTime(iso) {
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
export const dateFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
export const shortDateTimeFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });

export function fmtTime(iso) {
  const d = parseTime(iso);
  if (!d) return '—';
  return sameDay(d, new Date()) ? timeFmt.format(d) : dateTimeFmt.format(d);
}

/** A <time> element for an RFC 3339 string (or a dash for null). */
export function timeEl(iso, fmt) {
  const d = parseTime(iso);
  if (!d) return h('span', { class: 'muted', title: 'not recorded' }, '—');
  return h('time', { datetime: d.toISOString(), title: dateTimeFmt.format(d) }, fmt ? fmt.format(d) : fmtTime(iso));
}

export function fmtFullTime(iso) {
  const d = parseTime(iso);
  return d ? dateTimeFmt.format(d) : '—';
}

export function plural(n, one, many) {
  return `${fmtNum(n)} ${n === 1 ? one : many}`;
}

export function shortId(id) {
  const str = String(id ?? '');
  return str.length > 8 ? `${str.slice(0, 8)}…` : str;
}

export function roleLabel(role) {
  if (role === ADMIN_ROLE) return 'tenant admin';
  if (role === VENDOR_ROLE) return 'vendor';
  return role;
}

export function reasonLabel(reason) {
  return REASON_LABELS[reason] || String(reason);
}


export function pageTitle(text) {
  document.title = `${text} · License Ledger console`;
  return h('h1', { tabindex: '-1' }, text);
}

export function errorNotice(text) {
  return h('p', { class: 'notice notice-error', 'data-testid': 'error' }, text);
}

// ---------------------------------------------------------------------------
// Seat meter

export function seatMeter(label) {
  const meter = h('meter', { min: '0', max: '1', value: '0', 'aria-label': label, class: 'seat-meter' });
  return meter;
}

export function updateMeter(meter, inUse, seats, label) {
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

