// The admin's card for the knowledge bases themselves: each one with its files, chunks, groups and
// operator password; create one (name and an optional operator password), set a password, delete
// one after typing its name. It does not show or change what is inside one (the Knowledge base page).

import { api } from './api.js';
import { h, replace, badge, card, datum } from './dom.js';
import { t } from './i18n.js';
import { knowledgeBases, chooseKnowledgeBase, groupBindings } from './knowledge_bases.js';

const NAME = /^[a-z][a-z0-9_]{0,31}$/;

export function knowledgeBaseAdmin(ctx) {
  const table = h('table', { id: 'kb-table', class: 'table stacked' });
  const name = h('input', { id: 'new-kb-name', type: 'text', class: 'narrow', placeholder: t('kbAdmin.namePlaceholder'), autocomplete: 'off' });
  const password = h('input', { id: 'new-kb-password', type: 'password', class: 'narrow', placeholder: t('kbAdmin.passwordPlaceholder'), autocomplete: 'new-password' });

  async function create() {
    const value = name.value.trim();
    if (!NAME.test(value)) {
      ctx.toast(t('kbAdmin.badName'), 'error');
      return;
    }
    try {
      const body = password.value ? { name: value, password: password.value } : { name: value };
      await api.post('/api/knowledge-bases', body);
      name.value = '';
      password.value = '';
      await ctx.refreshKnowledgeBases();
      chooseKnowledgeBase(value);
      ctx.toast(t('kbAdmin.created', { kb: value }), 'ok');
      ctx.rerender();
    } catch (err) {
      ctx.report(err.status === 409 ? new Error(t('kbAdmin.exists', { kb: value })) : err);
    }
  }

  function show() {
    const head = [t('kbAdmin.col.name'), t('kbAdmin.col.files'), t('kbAdmin.col.chunks'), t('kbAdmin.col.groups'), t('kbAdmin.col.operator'), ''];
    const bound = groupBindings();
    const rows = knowledgeBases.list.map((kb) => {
      const actions = h('td', { class: 'actions' });
      const row = h('tr', { dataset: { kb: kb.name } },
        h('td', { 'data-label': head[0] }, datum('strong', {}, kb.name), ' ',
          badge(t(kb.source === 'console' ? 'kbAdmin.fromConsole' : 'kbAdmin.fromConfig'), 'muted')),
        h('td', { class: 'num', 'data-label': head[1] }, kb.files ?? '—'),
        h('td', { class: 'num', 'data-label': head[2] }, kb.chunks ?? '—'),
        h('td', { 'data-label': head[3] }, bound.filter((b) => b.kb === kb.name).length
          ? datum('span', {}, bound.filter((b) => b.kb === kb.name).map((b) => b.group).join(', ')) : '—'),
        h('td', { 'data-label': head[4] }, badge(t(kb.has_operator ? 'kbAdmin.hasPassword' : 'kbAdmin.noPassword'), kb.has_operator ? 'ok' : 'muted')),
        actions);
      replace(actions, h('div', { class: 'item-actions always' },
        h('button', { type: 'button', class: 'set-password ghost', onclick: () => askPassword(kb, actions) }, t('kbAdmin.setPassword')),
        h('button', { type: 'button', class: 'delete-kb ghost danger', onclick: () => askDelete(kb, actions) }, t('common.delete'))));
      return row;
    });
    replace(table,
      h('thead', {}, h('tr', {}, head.map((text) => h('th', {}, text)))),
      h('tbody', {}, rows));
  }

  function askPassword(kb, cell) {
    const input = h('input', { type: 'password', class: 'kb-password-input narrow', placeholder: t('kbAdmin.newPassword'), autocomplete: 'new-password' });
    const save = async () => {
      try {
        await api.put(`/api/knowledge-bases/${encodeURIComponent(kb.name)}/password`, { password: input.value });
        ctx.toast(t('kbAdmin.passwordSet', { kb: kb.name }), 'ok');
        await ctx.refreshKnowledgeBases();
        show();
      } catch (err) {
        ctx.report(err);
      }
    };
    replace(cell, h('div', { class: 'confirm' }, input,
      h('button', { type: 'button', class: 'save-password', onclick: save }, t('common.save')),
      h('button', { type: 'button', class: 'ghost', onclick: show }, t('common.cancel'))));
    input.focus();
  }

  // Deleting needs the name typed again: the button stays off until it matches.
  function askDelete(kb, cell) {
    const input = h('input', { type: 'text', class: 'confirm-kb-name narrow', placeholder: t('kbAdmin.confirmPlaceholder'), autocomplete: 'off' });
    const go = h('button', { type: 'button', class: 'confirm-delete-kb danger-solid', disabled: true }, t('kbAdmin.deleteForGood'));
    input.addEventListener('input', () => { go.disabled = input.value !== kb.name; });
    go.addEventListener('click', async () => {
      try {
        await api.del(`/api/knowledge-bases/${encodeURIComponent(kb.name)}`, { confirm: input.value });
        ctx.toast(t('kbAdmin.deleted', { kb: kb.name }), 'ok');
        await ctx.refreshKnowledgeBases();
        ctx.rerender();
      } catch (err) {
        ctx.report(err);
      }
    });
    replace(cell, h('div', { class: 'confirm' },
      h('span', { class: 'small' }, t('kbAdmin.typeName', { kb: kb.name })), input, go,
      h('button', { type: 'button', class: 'ghost', onclick: show }, t('common.cancel'))));
    input.focus();
  }

  show();
  const section = card(t('kbAdmin.title'),
    h('p', { class: 'muted small' }, t('kbAdmin.lead')),
    table,
    h('h3', {}, t('kbAdmin.create')),
    h('div', { class: 'row' }, name, password,
      h('button', { id: 'create-kb-button', type: 'button', onclick: create }, t('kbAdmin.createButton'))),
    h('p', { class: 'muted small' }, t('kbAdmin.nameRule')));
  section.id = 'kb-admin';
  return section;
}
