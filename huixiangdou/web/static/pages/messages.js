// Group messages: what the frontends received and what the bot did with each, filterable by group
// and outcome; marking one "should have answered/ignored" adds it to the examples for the next
// calibration.

import { api } from '../api.js';
import { h, replace, badge, card } from '../dom.js';
import { when } from '../format.js';

const OUTCOMES = { answered: 'ok', ignored: 'warn', failed: 'error' };
const LABELS = { should_answer: ['should have answered', 'ok'], should_ignore: ['should have ignored', 'warn'] };
const PAGE = 50;

export async function render(root, ctx) {
  const groupFilter = h('select', { id: 'group-filter' }, h('option', { value: '' }, 'All groups'));
  const outcomeFilter = h('select', { id: 'outcome-filter' },
    h('option', { value: '' }, 'All outcomes'), h('option', { value: 'answered' }, 'Answered'),
    h('option', { value: 'ignored' }, 'Ignored'), h('option', { value: 'failed' }, 'Failed'));
  const table = h('table', { id: 'messages-table', class: 'table' });
  const pager = h('div', { class: 'pager' });
  let offset = 0;

  async function load() {
    const params = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    if (groupFilter.value) params.set('group', groupFilter.value);
    if (outcomeFilter.value) params.set('outcome', outcomeFilter.value);
    const data = await api.get(`/api/messages?${params}`);
    showGroups(groupFilter, data.groups);
    showMessages(table, data.messages, mark);
    showPager(data.total);
  }

  function showPager(total) {
    const last = Math.min(total, offset + PAGE);
    replace(pager,
      h('span', { class: 'muted' }, total ? `${offset + 1}–${last} of ${total}` : 'No messages'),
      h('button', { type: 'button', class: 'ghost', disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - PAGE); load().catch(ctx.report); } }, '← Newer'),
      h('button', { type: 'button', class: 'ghost', disabled: last >= total, onclick: () => { offset += PAGE; load().catch(ctx.report); } }, 'Older →'));
  }

  async function mark(message, label, row) {
    try {
      const res = await api.post(`/api/messages/${encodeURIComponent(message.id)}/label`, { label });
      message.label = res.label;
      showLabel(row.querySelector('.label'), res.label);
      const list = res.added_to === 'good' ? 'on-topic' : 'chatter';
      ctx.toast(res.duplicate ? `Already among the ${list} examples.` : `Added to the ${list} examples; recalibrate to use it.`, 'ok');
    } catch (err) {
      ctx.report(err);
    }
  }

  for (const select of [groupFilter, outcomeFilter]) {
    select.addEventListener('change', () => { offset = 0; load().catch(ctx.report); });
  }

  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Group messages'),
      h('p', { class: 'lead' }, 'What the groups sent and what the bot did. Mark a wrong decision: it becomes an example for the next calibration.')),
    card(null, h('div', { class: 'row filters' }, h('label', {}, 'Group ', groupFilter), h('label', {}, 'Outcome ', outcomeFilter), pager), table),
  );
  await load();
}

function showGroups(select, groups) {
  const current = select.value;
  replace(select, h('option', { value: '' }, 'All groups'), groups.map((g) => h('option', { value: g }, g)));
  select.value = groups.includes(current) ? current : '';
}

function showLabel(cell, label) {
  const [text, kind] = LABELS[label] || [];
  replace(cell, text ? badge(text, kind) : '');
  cell.dataset.label = label || '';
}

function showMessages(table, messages, mark) {
  const rows = messages.map((m) => {
    const labelCell = h('td', { class: 'label' });
    showLabel(labelCell, m.label);
    const row = h('tr', { dataset: { id: m.id, outcome: m.outcome } },
      h('td', { class: 'nowrap' }, when(m.time)),
      h('td', { class: 'group' }, m.group),
      h('td', { class: 'query' }, m.query),
      h('td', { class: 'result' }, badge(m.outcome, OUTCOMES[m.outcome] || 'muted'), h('div', { class: 'reason muted small' }, m.reason)),
      h('td', { class: 'reply' }, m.reply ? h('details', {}, h('summary', {}, m.reply.slice(0, 60) + (m.reply.length > 60 ? '…' : '')),
        h('div', { class: 'reply-text' }, m.reply), m.references?.length ? h('div', { class: 'muted small' }, `Sources: ${m.references.map((reference, i) => `[${i + 1}] ${reference}`).join(", ")}`) : null) : h('span', { class: 'muted' }, '—')),
      labelCell,
      h('td', { class: 'actions' }, h('div', { class: 'mark' },
        h('button', { type: 'button', class: 'mark-answer ghost', title: 'The bot should have answered this: add it to the on-topic examples' }, 'Should have answered'),
        h('button', { type: 'button', class: 'mark-ignore ghost', title: 'The bot should have ignored this: add it to the chatter examples' }, 'Should have ignored'))));
    row.querySelector('.mark-answer').addEventListener('click', () => mark(m, 'should_answer', row));
    row.querySelector('.mark-ignore').addEventListener('click', () => mark(m, 'should_ignore', row));
    return row;
  });
  replace(table,
    h('thead', {}, h('tr', {}, ['Time', 'Group', 'Message', 'Outcome', 'Reply', 'Label', ''].map((t) => h('th', {}, t)))),
    h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 7, class: 'muted empty' }, 'No messages yet: they appear here once a frontend relays them.'))));
}
