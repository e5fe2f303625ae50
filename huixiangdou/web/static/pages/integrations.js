// Integrations: the configured frontend and the callback URL to paste into Lark/WeChat tooling, the
// LLM backends and their health, web search, the OpenAI-compatible API, connection tests (each with
// its own result) and, for an admin, which knowledge base answers each group.

import { api } from '../api.js';
import { h, replace, badge, card, facts, datum } from '../dom.js';
import { t } from '../i18n.js';
import { knowledgeBases, groupBindings } from '../knowledge_bases.js';
import { waiting } from '../wait.js';
import { elapsed } from '../format.js';

export async function render(root, ctx) {
  const data = await api.get('/api/integrations');
  const frontendInfo = h('div', { id: 'frontend-info' });
  const callback = data.frontend.callback_url
    ? datum('code', { id: 'callback-url', class: 'copyable' }, data.frontend.callback_url)
    : h('span', { id: 'callback-url', class: 'muted' }, t('integrations.noCallback'));
  const backends = h('table', { id: 'llm-backends', class: 'table' });

  const details = Object.entries(data.frontend.details || {}).map(([k, v]) => [datum('span', {}, k.replaceAll('_', ' ')), readable(v)]);
  replace(frontendInfo, facts([[t('integrations.type'), datum('strong', {}, data.frontend.type || 'none')], ...details]));

  replace(backends,
    h('thead', {}, h('tr', {}, ['backend', 'model', 'health', 'detail'].map((k) => h('th', {}, t(`integrations.col.${k}`))))),
    h('tbody', {}, data.llm.backends.length ? data.llm.backends.map((b) => h('tr', { dataset: { name: b.name } },
      datum('td', {}, b.name), h('td', {}, datum('code', {}, b.model || '—')),
      h('td', {}, badge(t(b.healthy ? 'integrations.healthy' : 'integrations.unhealthy'), b.healthy ? 'ok' : 'error')),
      datum('td', { class: 'muted small' }, b.detail || '')))
      : h('tr', {}, h('td', { colspan: 4, class: 'muted empty' }, t('integrations.noBackend')))));

  // Each test has its own result, under its own button: two tests at once cannot overwrite each other.
  const results = {
    frontend: h('div', { id: 'test-frontend-result', class: 'test-result', hidden: true }),
    llm: h('div', { id: 'test-llm-result', class: 'test-result', hidden: true }),
  };
  async function test(target, button) {
    const result = results[target];
    button.disabled = true;
    result.hidden = false;
    delete result.dataset.ok;
    const wait = waiting(t(`integrations.testing.${target}`));
    replace(result, wait.el);
    try {
      const res = await api.post('/api/integrations/test', { target });
      replace(result, badge(t(res.ok ? 'integrations.ok' : 'integrations.failed'), res.ok ? 'ok' : 'error'), ' ',
        h('span', { class: 'muted small' }, t('integrations.after', { time: elapsed(wait.seconds()) })), ' ',
        datum('span', {}, res.detail));
      result.dataset.ok = String(res.ok);
    } catch (err) {
      replace(result, badge(t('integrations.failed'), 'error'), ' ', datum('span', {}, err.message));
      result.dataset.ok = 'false';
      ctx.report(err);
    } finally {
      wait.stop();
      button.disabled = false;
    }
  }

  async function copy() {
    try {
      await navigator.clipboard.writeText(callback.textContent);
      ctx.toast(t('integrations.copied'), 'ok');
    } catch {
      ctx.toast(t('integrations.copyRefused'), 'error');
    }
  }

  const testFrontend = h('button', { id: 'test-frontend', type: 'button', onclick: () => test('frontend', testFrontend) }, t('integrations.testFrontend'));
  const testLlm = h('button', { id: 'test-llm', type: 'button', onclick: () => test('llm', testLlm) }, t('integrations.testLlm'));
  const api_ = data.assistant_api || {};
  const curl = [`curl ${api_.base_url}/chat/completions \\`, "  -H 'Content-Type: application/json' \\",
    `  -d '{"model": "${api_.model}",`, '       "messages": [{"role": "user", "content": "茴香豆怎么部署？"}]}\''].join('\n');

  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, t('title.integrations')),
      h('p', { class: 'lead' }, t('integrations.lead'))),
    h('div', { class: 'grid-2' },
      card(t('integrations.frontend'), frontendInfo,
        h('h3', {}, t('integrations.callback')),
        h('p', { class: 'muted small' }, t('integrations.callbackHint')),
        h('div', { class: 'row' }, callback, data.frontend.callback_url ? h('button', { type: 'button', class: 'ghost', onclick: copy }, t('integrations.copy')) : null),
        h('div', { class: 'row' }, testFrontend), results.frontend),
      card(t('integrations.llm'), facts([[t('integrations.llmServer'), datum('code', {}, data.llm.client_url)]]),
        h('div', { class: 'table-scroll' }, backends), h('div', { class: 'row' }, testLlm), results.llm)),
    groupsCard(ctx, data.frontend.type) || '',
    h('div', { class: 'grid-2' },
      card(t('integrations.webSearch'), facts([[t('integrations.enabled'), data.web_search.enabled ? badge(t('integrations.on'), 'ok') : badge(t('integrations.off'), 'muted')],
        [t('integrations.engine'), data.web_search.engine ? datum('span', {}, data.web_search.engine) : '—']])),
      card(t('integrations.assistantApi'), facts([[t('integrations.baseUrl'), datum('code', {}, api_.base_url)], [t('integrations.model'), datum('code', {}, api_.model)]]),
        datum('pre', { class: 'snippet' }, curl))),
  );
}

// Which knowledge base answers each group; an admin binds a group to one (PUT /api/groups/<id>).
function groupsCard(ctx, frontend) {
  if (!ctx.knowledgeBases.available) return null;
  const bindings = groupBindings();
  const admin = ctx.role() === 'admin';
  const table = h('table', { id: 'group-bindings', class: 'table stacked' },
    h('thead', {}, h('tr', {}, h('th', {}, t('groups.col.group')), h('th', {}, t('groups.col.kb')), h('th', {}, t('groups.col.frontend')))),
    h('tbody', {}, bindings.length ? bindings.map((b) => h('tr', { dataset: { group: b.group } },
      datum('td', { 'data-label': t('groups.col.group') }, b.group), datum('td', { 'data-label': t('groups.col.kb') }, b.kb),
      datum('td', { 'data-label': t('groups.col.frontend') }, b.frontend || '—')))
      : h('tr', {}, h('td', { colspan: 3, class: 'muted empty' }, t('groups.none')))));
  if (!admin) return card(t('groups.title'), h('p', { class: 'muted small' }, t('groups.lead')), table);

  const groupInput = h('input', { id: 'bind-group', type: 'text', class: 'narrow', placeholder: t('groups.groupPlaceholder'), autocomplete: 'off' });
  const kbSelect = h('select', { id: 'bind-kb', dataset: { data: '' } }, knowledgeBases.list.map((k) => h('option', { value: k.name }, k.name)));
  kbSelect.value = ctx.kb;
  // Where the group lives: the configured group frontend when it is one, else the operator picks.
  const kinds = ['lark_group', 'wechat_personal', 'wechat_wkteam'];
  const frontendSelect = h('select', { id: 'bind-frontend', dataset: { data: '' } }, kinds.map((k) => h('option', { value: k }, k)));
  frontendSelect.value = kinds.includes(frontend) ? frontend : 'lark_group';
  async function bind() {
    const id = groupInput.value.trim();
    if (!id) {
      ctx.toast(t('groups.typeGroup'), 'error');
      return;
    }
    try {
      await api.put(`/api/groups/${encodeURIComponent(id)}`, { knowledge_base: kbSelect.value, frontend: frontendSelect.value });
      ctx.toast(t('groups.bound', { group: id, kb: kbSelect.value }), 'ok');
      await ctx.refreshKnowledgeBases();
      ctx.rerender();
    } catch (err) {
      ctx.report(err);
    }
  }
  return card(t('groups.title'), h('p', { class: 'muted small' }, t('groups.lead')), table,
    h('h3', {}, t('groups.bind')),
    h('div', { class: 'row' }, groupInput, frontendSelect, h('span', { class: 'muted' }, '→'), kbSelect,
      h('button', { id: 'bind-button', type: 'button', onclick: bind }, t('groups.bindButton'))));
}

function readable(value) {
  if (typeof value === 'boolean') return value ? t('common.yes') : t('common.no');
  if (Array.isArray(value)) return value.length ? datum('span', {}, value.join(', ')) : t('common.all');
  if (value === null || value === '') return '—';
  return datum('span', {}, typeof value === 'object' ? JSON.stringify(value) : String(value));
}
