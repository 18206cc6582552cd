// The license view's admin sections: the usage report (numbers and two
// charts) and the recent denials.

import {
  h, s, setText, tableWrap, headerRow, fmtNum, fmtDecimal, fmtSecs, fmtTime, fmtFullTime, timeEl,
  shortDateTimeFmt, plural, reasonLabel, errorNotice,
} from './dom.js';
import {
  POLL_MS, REPORT_POLL_MS, clearProblem, isAbort, api, describe, pollFailure, poll,
} from './session.js';

const WINDOWS = [
  { value: 'hour', label: 'Last hour', ms: 3600e3 },
  { value: 'day', label: 'Last 24 hours', ms: 24 * 3600e3 },
  { value: 'week', label: 'Last 7 days', ms: 7 * 24 * 3600e3 },
];


export function reportSection(signal, licenseId) {
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
export function denialsSection(signal, licenseId) {
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

