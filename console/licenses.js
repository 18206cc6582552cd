// View: the tenant's licenses, with live seat usage.

import {
  h, fill, placeAt, setText, tableWrap, headerRow, fmtNum, fmtLag, parseTime, timeEl, dateFmt, shortId,
  pageTitle, errorNotice, seatMeter, updateMeter,
} from './dom.js';
import {
  POLL_MS, LIST_POLL_MS, NETWORK_RETRY_MS, USAGE_REQUESTS_PER_SEC,
  getIdentity, clearProblem, ApiError, isAbort, api, describe, pollFailure, poll,
} from './session.js';

export function licensesView(view, signal) {
  const lagSummary = h('span', { 'data-testid': 'projection-lag-max' }, '—');
  const { tenant: tenantId } = getIdentity();
  const tenant = tenantId ? ` of ${tenantId}` : '';
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

