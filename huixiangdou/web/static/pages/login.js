// Log in: with the admin token (every knowledge base, every change), or as the operator of one
// knowledge base with its password (changes to that knowledge base only).

import { api } from '../api.js';
import { h, card } from '../dom.js';
import { t } from '../i18n.js';

export async function render(root, ctx) {
  const token = h('input', { id: 'login-token', type: 'password', autocomplete: 'current-password', placeholder: t('login.tokenPlaceholder') });
  const adminForm = h('form', { id: 'login-form', class: 'login-form' },
    h('label', { for: 'login-token' }, t('login.token')), token,
    h('button', { id: 'login-button', type: 'submit' }, t('login.submit')));
  adminForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const res = await api.post('/api/login', { token: token.value });
      token.value = '';
      ctx.toast(t('login.done'), 'ok');
      await ctx.afterLogin(res.csrf);
    } catch (err) {
      ctx.report(err.status === 401 ? new Error(t('login.wrongToken')) : err);
    }
  });

  // Logged out, the list of knowledge bases may be closed (reads need credentials once an operator exists):
  // the operator types the name, with the names the console could list offered.
  const names = ctx.knowledgeBases.list.map((k) => k.name);
  const kbSelect = h('input', { id: 'login-kb', type: 'text', list: 'login-kb-names', autocomplete: 'off', dataset: { data: '' } });
  const kbNames = h('datalist', { id: 'login-kb-names' }, names.map((name) => h('option', { value: name })));
  kbSelect.value = ctx.kb;
  const password = h('input', { id: 'login-password', type: 'password', autocomplete: 'current-password', placeholder: t('login.passwordPlaceholder') });
  const operatorForm = h('form', { id: 'operator-form', class: 'login-form' },
    h('label', { for: 'login-kb' }, t('login.kb')), kbSelect, kbNames,
    h('label', { for: 'login-password' }, t('login.password')), password,
    h('button', { id: 'login-operator-button', type: 'submit' }, t('login.submit')));
  operatorForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const res = await api.post('/api/login', { kb: kbSelect.value, password: password.value });
      password.value = '';
      ctx.toast(t('login.doneOperator', { kb: kbSelect.value }), 'ok');
      await ctx.afterLogin(res.csrf);
    } catch (err) {
      ctx.report(err.status === 401 ? new Error(t('login.wrongPassword')) : err);
    }
  });

  const admin = ctx.session.token_configured
    ? card(t('login.adminTitle'), h('p', { class: 'muted small' }, t('login.adminHint')), adminForm)
    : card(t('login.adminTitle'), h('p', { class: 'note' }, t('login.noToken')));
  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, t('title.login')), h('p', { class: 'lead' }, t('login.lead'))),
    h('div', { class: 'grid-2' }, admin,
      card(t('login.operatorTitle'), h('p', { class: 'muted small' }, t('login.operatorHint')), operatorForm)),
  );
  token.focus();
}
