// License Ledger web console: plain ES modules, no dependencies, no build step.
//
// Rules the console's modules keep:
// - Every number shown comes from an API answer; the browser only formats it
//   (sums of a report's per-reason denials or per-user seat-hours are the only
//   arithmetic, plus the largest of the report's per-day peaks).
// - All API text reaches the page through textContent / attributes, never
//   innerHTML.
// - Each view owns an AbortController: leaving the view aborts its requests
//   and stops its timers.
//
// This module is the entry: sign-in and sign-out, routing, start. The rest:
// dom.js (element helpers, formatting), session.js (identity, status line,
// API, polling), licenses.js, license.js, report.js and audit.js (the views).

import { h, visuallyHidden, roleLabel, pageTitle, errorNotice } from './dom.js';
import {
  TOKEN_KEY, identityFrom, getIdentity, setIdentity, onUnauthorized,
  announce, setProblem, resetStatus, isAbort,
} from './session.js';
import { licensesView } from './licenses.js';
import { licenseView } from './license.js';
import { auditView } from './audit.js';

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
  if (!getIdentity()) return; // already signed out (e.g. several requests got 401)
  setIdentity(null);
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
  setIdentity(id);
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
  if (!getIdentity()) return;
  stopView();
  resetStatus();
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

function notFoundView(view) {
  view.append(
    pageTitle('Page not found'),
    errorNotice('There is no such page in the console.'),
    h('p', {}, h('a', { href: '#/licenses' }, 'Go to the licenses')),
  );
}

// ---------------------------------------------------------------------------
// Start

function start() {
  onUnauthorized(signOut);
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
