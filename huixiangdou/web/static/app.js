// The console's shell: hash routes to one page module each, the top bar (menu, knowledge base switch,
// language, login state) and the toast. A page module exports render(root, ctx) and may return a
// function that stops its timers.

import { api, setCsrf, currentKnowledgeBase } from './api.js';
import { h, replace } from './dom.js';
import { t, currentLang, setLang, translateStatic } from './i18n.js';
import { knowledgeBases, loadKnowledgeBases, chooseKnowledgeBase, switchable } from './knowledge_bases.js';
import * as kb from './pages/kb.js';
import * as examples from './pages/examples.js';
import * as tryIt from './pages/try.js';
import * as messages from './pages/messages.js';
import * as integrations from './pages/integrations.js';
import * as login from './pages/login.js';

const ROUTES = { kb, examples, try: tryIt, messages, integrations, login };

const session = { admin: false, token_configured: false, csrf: null, protect_api: false, role: null, kb: null };
let stopPage = null;
let toastTimer = null;
let renderSeq = 0;
let lastRoute = 'kb';

// Who is logged in: 'admin' (the admin token), 'operator' (one knowledge base's password) or null.
function role() {
  if (session.role === 'operator') return 'operator';
  return session.admin ? 'admin' : null;
}

// `data`: the message is the server's (shown as it is, not a catalogue text).
function toast(message, kind = 'error', { data = false } = {}) {
  const el = document.getElementById('toast');
  el.textContent = message;
  el.dataset.kind = kind;
  if (data) el.dataset.data = '';
  else delete el.dataset.data;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, kind === 'error' ? 9000 : 4000);
}

// Every page reports failures the same way: the API's message (it says what to do) in the toast.
function report(err) {
  console.error(err);
  toast(err.message || String(err), 'error', { data: true });
  // A refused change may mean the login expired: show the login state again.
  if (role() && (err.status === 401 || err.code === 'csrf')) loadSession();
  if (err.code === 'unknown_knowledge_base') refreshKnowledgeBases().then((changed) => changed && route());
}

async function loadSession() {
  try {
    Object.assign(session, { role: null, kb: null }, await api.get('/api/session'));
  } catch (err) {
    report(err);
  }
  setCsrf(session.csrf);
  showSession();
}

async function refreshKnowledgeBases() {
  const changed = await loadKnowledgeBases(session, report);
  showSwitcher();
  return changed;
}

function showSession() {
  const state = document.getElementById('admin-state');
  const who = role();
  if (who === 'admin') {
    state.textContent = t('auth.admin');
    state.className = 'badge badge-ok';
    state.title = t('auth.adminTitle');
  } else if (who === 'operator') {
    state.textContent = t('auth.operator');
    state.className = 'badge badge-ok';
    state.title = t('auth.operatorTitle', { kb: session.kb || '' });
  } else {
    state.textContent = t('auth.readOnly');
    state.className = 'badge badge-muted';
    state.title = session.token_configured ? t('auth.readOnlyTitle') : t('auth.noTokenTitle');
  }
  document.getElementById('login-link').hidden = Boolean(who) || (!session.token_configured && !knowledgeBases.available);
  document.getElementById('logout-button').hidden = !who;
  document.body.dataset.role = who || 'visitor';
}

function showSwitcher() {
  const select = document.getElementById('kb-select');
  const names = switchable(session);
  replace(select, names.map((name) => h('option', { value: name }, name)));
  select.value = currentKnowledgeBase();
  select.disabled = names.length < 2;
}

function currentRoute() {
  const name = (location.hash.match(/^#\/([a-z]+)/) || [])[1];
  return ROUTES[name] ? name : 'kb';
}

function closeMenu() {
  document.body.classList.remove('menu-open');
  document.getElementById('menu-button').setAttribute('aria-expanded', 'false');
}

async function route() {
  const name = currentRoute();
  if (name !== 'login') lastRoute = name;
  const seq = ++renderSeq;
  if (stopPage) stopPage();
  stopPage = null;
  closeMenu();
  showSwitcher();
  delete document.body.dataset.ready;
  for (const key of Object.keys(ROUTES)) {
    document.getElementById(`nav-${key}`)?.classList.toggle('active', key === name);
  }
  document.title = `${t(`title.${name}`)} · ${t('brand.name')}`;
  const root = document.getElementById('page');
  root.replaceChildren();
  root.dataset.page = name;
  const ctx = {
    session, knowledgeBases, toast, report, rerender: route, role,
    kb: currentKnowledgeBase(),
    returnTo: lastRoute,
    afterLogin: async (csrf) => {
      setCsrf(csrf);
      await loadSession();
      await refreshKnowledgeBases();
      location.hash = `#/${lastRoute}`;
    },
    refreshKnowledgeBases: async () => { await refreshKnowledgeBases(); },
  };
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

function wireTopBar() {
  const menuButton = document.getElementById('menu-button');
  menuButton.addEventListener('click', () => {
    const open = document.body.classList.toggle('menu-open');
    menuButton.setAttribute('aria-expanded', String(open));
  });
  const langSelect = document.getElementById('lang-select');
  langSelect.value = currentLang();
  langSelect.addEventListener('change', () => {
    setLang(langSelect.value);
    translateStatic();
    showSession();
    route();
  });
  document.getElementById('kb-select').addEventListener('change', (event) => {
    chooseKnowledgeBase(event.target.value);
    route();
  });
  document.getElementById('logout-button').addEventListener('click', async () => {
    try {
      await api.post('/api/logout');
    } catch (err) {
      report(err);
    }
    setCsrf(null);
    await loadSession();
    await refreshKnowledgeBases();
    route();
  });
}

translateStatic();
wireTopBar();
window.addEventListener('hashchange', route);
// The first page waits for the session and the knowledge bases: every request it makes names its kb.
loadSession().then(() => loadKnowledgeBases(session, report)).then(() => {
  showSwitcher();
  showSession();
  route();
});
