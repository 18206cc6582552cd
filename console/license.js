// View: one license (live summary and sessions; for admins also the usage
// report and the recent denials).

import {
  h, placeAt, setText, tableWrap, headerRow, fmtNum, fmtLag, timeEl, pageTitle, errorNotice, seatMeter, updateMeter,
} from './dom.js';
import {
  POLL_MS, getIdentity, clearProblem, announce, isAbort, api, describe, pollFailure, poll,
} from './session.js';
import { reportSection, denialsSection } from './report.js';

export function licenseView(view, viewSignal, licenseId) {
  // A child of the view's controller: a 404 or 403 stops this page's polls.
  const local = new AbortController();
  viewSignal.addEventListener('abort', () => local.abort(), { once: true });
  const { signal } = local;
  const admin = getIdentity().isAdmin;
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
