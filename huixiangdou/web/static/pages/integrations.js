// Integrations: the configured frontend and the callback URL to paste into Lark/WeChat tooling, the
// LLM backends and their health, web search, the OpenAI-compatible API, and connection tests.

import { api } from '../api.js';
import { h, replace, badge, card, facts } from '../dom.js';

export async function render(root, ctx) {
  const data = await api.get('/api/integrations');
  const frontendInfo = h('div', { id: 'frontend-info' });
  const callback = data.frontend.callback_url
    ? h('code', { id: 'callback-url', class: 'copyable' }, data.frontend.callback_url)
    : h('span', { id: 'callback-url', class: 'muted' }, 'This frontend receives no callbacks.');
  const backends = h('table', { id: 'llm-backends', class: 'table' });
  const result = h('div', { id: 'test-result', class: 'test-result', hidden: true });

  const details = Object.entries(data.frontend.details || {}).map(([k, v]) => [k.replaceAll('_', ' '), readable(v)]);
  replace(frontendInfo, facts([['Type', h('strong', {}, data.frontend.type || 'none')], ...details]));

  replace(backends,
    h('thead', {}, h('tr', {}, ['Backend', 'Model', 'Health', 'Detail'].map((t) => h('th', {}, t)))),
    h('tbody', {}, data.llm.backends.length ? data.llm.backends.map((b) => h('tr', { dataset: { name: b.name } },
      h('td', {}, b.name), h('td', {}, h('code', {}, b.model || '—')),
      h('td', {}, badge(b.healthy ? 'healthy' : 'unhealthy', b.healthy ? 'ok' : 'error')),
      h('td', { class: 'muted small' }, b.detail || '')))
      : h('tr', {}, h('td', { colspan: 4, class: 'muted empty' }, 'No LLM backend is configured.'))));

  async function test(target, button) {
    button.disabled = true;
    result.hidden = false;
    replace(result, badge('testing', 'info'), ` ${target}…`);
    try {
      const res = await api.post('/api/integrations/test', { target });
      replace(result, badge(res.ok ? 'ok' : 'failed', res.ok ? 'ok' : 'error'), ` ${target}: ${res.detail}`);
      result.dataset.ok = String(res.ok);
    } catch (err) {
      replace(result, badge('failed', 'error'), ` ${target}: ${err.message}`);
      result.dataset.ok = 'false';
      ctx.report(err);
    } finally {
      button.disabled = false;
    }
  }

  async function copy() {
    try {
      await navigator.clipboard.writeText(callback.textContent);
      ctx.toast('Callback URL copied.', 'ok');
    } catch {
      ctx.toast('Select the URL and copy it by hand (the browser refused clipboard access).', 'error');
    }
  }

  const testFrontend = h('button', { id: 'test-frontend', type: 'button', onclick: () => test('frontend', testFrontend) }, 'Test the frontend');
  const testLlm = h('button', { id: 'test-llm', type: 'button', onclick: () => test('llm', testLlm) }, 'Test the LLM');
  const api_ = data.assistant_api || {};
  const curl = [`curl ${api_.base_url}/chat/completions \\`, "  -H 'Content-Type: application/json' \\",
    `  -d '{"model": "${api_.model}",`, '       "messages": [{"role": "user", "content": "茴香豆怎么部署？"}]}\''].join('\n');

  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Integrations'),
      h('p', { class: 'lead' }, 'Where messages come from and which models answer them.')),
    result,
    h('div', { class: 'grid-2' },
      card('Group chat frontend', frontendInfo,
        h('h3', {}, 'Callback URL'),
        h('p', { class: 'muted small' }, 'Paste this into the Lark event subscription or the WeChat tooling.'),
        h('div', { class: 'row' }, callback, data.frontend.callback_url ? h('button', { type: 'button', class: 'ghost', onclick: copy }, 'Copy') : null),
        h('div', { class: 'row' }, testFrontend)),
      card('LLM', facts([['LLM server', h('code', {}, data.llm.client_url)]]), backends, h('div', { class: 'row' }, testLlm))),
    h('div', { class: 'grid-2' },
      card('Web search', facts([['Enabled', data.web_search.enabled ? badge('on', 'ok') : badge('off', 'muted')], ['Engine', data.web_search.engine || '—']])),
      card('Assistant API (OpenAI-compatible)', facts([['Base URL', h('code', {}, api_.base_url)], ['Model', h('code', {}, api_.model)]]),
        h('pre', { class: 'snippet' }, curl))),
  );
}

function readable(value) {
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (Array.isArray(value)) return value.length ? value.join(', ') : 'all';
  if (value === null || value === '') return '—';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}
