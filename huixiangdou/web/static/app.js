// The console's shell: hash routes to one page module each, the login in the top bar, and the toast.
// A page module exports render(root, ctx) and may return a function that stops its timers.

import { api, setCsrf } from './api.js';
import * as kb from './pages/kb.js';
import * as examples from './pages/examples.js';
import * as tryIt from './pages/try.js';
import * as messages from './pages/messages.js';
import * as integrations from './pages/integrations.js';

const ROUTES = { kb, examples, try: tryIt, messages, integrations };
const TITLES = {
  kb: 'Knowledge base', examples: 'Examples & calibration', try: 'Try it',
  messages: 'Group messages', integrations: 'Integrations',
};

const session = { admin: false, token_configured: false, csrf: null, protect_api: false };
let stopPage = null;
let toastTimer = null;
let renderSeq = 0;

function toast(message, kind = 'error') {
  const el = document.getElementById('toast');
  el.textContent = message;
  el.dataset.kind = kind;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, kind === 'error' ? 9000 : 4000);
}

// Every page reports failures the same way: the API's message (it says what to do) in the toast.
function report(err) {
  console.error(err);
  toast(err.message || String(err), 'error');
  // A refused change may mean the login expired: show the login form again.
  if (session.admin && (err.status === 401 || err.code === 'csrf')) loadSession();
}

async function loadSession() {
  try {
    Object.assign(session, await api.get('/api/session'));
  } catch (err) {
    report(err);
  }
  setCsrf(session.csrf);
  showSession();
}

function showSession() {
  const state = document.getElementById('admin-state');
  const form = document.getElementById('login-form');
  const logout = document.getElementById('logout-button');
  if (session.admin) {
    state.textContent = 'admin';
    state.className = 'badge badge-ok';
    state.title = 'Logged in: changes are allowed';
  } else if (!session.token_configured) {
    state.textContent = 'read-only';
    state.className = 'badge badge-muted';
    state.title = 'No admin token is configured: set [web] admin_token or HUIXIANGDOU_ADMIN_TOKEN to allow changes';
  } else {
    state.textContent = 'read-only';
    state.className = 'badge badge-muted';
    state.title = 'Log in with the admin token to make changes';
  }
  form.hidden = session.admin || !session.token_configured;
  logout.hidden = !session.admin;
}

function currentRoute() {
  const name = (location.hash.match(/^#\/([a-z]+)/) || [])[1];
  return ROUTES[name] ? name : 'kb';
}

async function route() {
  const name = currentRoute();
  const seq = ++renderSeq;
  if (stopPage) stopPage();
  stopPage = null;
  delete document.body.dataset.ready;
  for (const key of Object.keys(ROUTES)) {
    document.getElementById(`nav-${key}`).classList.toggle('active', key === name);
  }
  document.title = `${TITLES[name]} · HuixiangDou`;
  const root = document.getElementById('page');
  root.replaceChildren();
  root.dataset.page = name;
  const ctx = { session, toast, report, rerender: route };
  try {
    const stop = await ROUTES[name].render(root, ctx);
    if (seq !== renderSeq) {
      if (typeof stop === 'function') stop();
      return;
    }
    stopPage = typeof stop === 'function' ? stop : null;
  } catch (err) {
    report(err);
  }
  // Tests and the benchmark wait for this: the page has its data and its controls work.
  if (seq === renderSeq) {
    document.body.dataset.ready = name;
    performance.mark(`ready:${name}`);
  }
}

function wireLogin() {
  document.getElementById('login-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = document.getElementById('login-token');
    try {
      const res = await api.post('/api/login', { token: input.value });
      input.value = '';
      setCsrf(res.csrf);
      await loadSession();
      toast('Logged in: changes are allowed.', 'ok');
      route();
    } catch (err) {
      report(err.status === 401 ? new Error('That is not the admin token ([web] admin_token or HUIXIANGDOU_ADMIN_TOKEN).') : err);
    }
  });
  document.getElementById('logout-button').addEventListener('click', async () => {
    try {
      await api.post('/api/logout');
    } catch (err) {
      report(err);
    }
    setCsrf(null);
    await loadSession();
    route();
  });
}

wireLogin();
window.addEventListener('hashchange', route);
// The pages do not wait for the session: the login state only decides what the top bar shows.
loadSession();
route();
