// View: audit (log head, last checkpoint, last verification, verify now).

import { h, fill, setText, fmtNum, timeEl, pageTitle, errorNotice } from './dom.js';
import {
  AUDIT_POLL_MS, getIdentity, clearProblem, isAbort, api, describe, pollFailure, poll,
} from './session.js';

export function auditView(view, signal) {
  view.append(pageTitle('Audit'));
  if (!getIdentity().isAdmin) {
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

