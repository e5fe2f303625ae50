// Group messages: what the frontends received and what the bot did with each, filterable by group
// and outcome; marking one "should have answered/ignored" adds it to the examples for the next
// calibration.

import { api } from '../api.js';
import { h, replace, badge, card, datum } from '../dom.js';
import { t } from '../i18n.js';
import { when } from '../format.js';
import { renderMarkdown, plainText } from '../markdown.js';
import { outcomeName, reasonOf, scoresFromReason } from '../reject_explanation.js';

const OUTCOMES = { answered: 'ok', ignored: 'warn', failed: 'error' };
const LABELS = { should_answer: 'ok', should_ignore: 'warn' };
const PAGE = 50;

export async function render(root, ctx) {
  const groupFilter = h('select', { id: 'group-filter' }, h('option', { value: '' }, t('messages.allGroups')));
  const outcomeFilter = h('select', { id: 'outcome-filter' },
    h('option', { value: '' }, t('messages.allOutcomes')),
    ['answered', 'ignored', 'failed'].map((o) => h('option', { value: o }, outcomeName(o))));
  const table = h('table', { id: 'messages-table', class: 'table stacked' });
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
      h('span', { class: 'muted' }, total ? t('messages.range', { from: offset + 1, to: last, total }) : t('messages.none')),
      h('button', { type: 'button', class: 'ghost', disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - PAGE); load().catch(ctx.report); } }, t('messages.newer')),
      h('button', { type: 'button', class: 'ghost', disabled: last >= total, onclick: () => { offset += PAGE; load().catch(ctx.report); } }, t('messages.older')));
  }

  async function mark(message, label, row) {
    try {
      const res = await api.post(`/api/messages/${encodeURIComponent(message.id)}/label`, { label });
      message.label = res.label;
      showLabel(row.querySelector('.label'), res.label);
      const list = res.added_to === 'good' ? 'good' : 'bad';
      ctx.toast(t(res.duplicate ? `messages.already.${list}` : `messages.added.${list}`), 'ok');
    } catch (err) {
      ctx.report(err);
    }
  }

  for (const select of [groupFilter, outcomeFilter]) {
    select.addEventListener('change', () => { offset = 0; load().catch(ctx.report); });
  }

  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, t('title.messages'), ' ', datum('span', { class: 'kb-name' }, ctx.kb)),
      h('p', { class: 'lead' }, t('messages.lead'))),
    card(null, h('div', { class: 'row filters' },
      h('label', {}, h('span', {}, t('messages.group')), groupFilter),
      h('label', {}, h('span', {}, t('messages.outcome')), outcomeFilter), pager), h('div', { class: 'table-scroll' }, table)),
  );
  await load();
}

function preview(reply) {
  const text = plainText(reply);
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}

function showGroups(select, groups) {
  const current = select.value;
  replace(select, h('option', { value: '' }, t('messages.allGroups')), groups.map((g) => datum('option', { value: g }, g)));
  select.value = groups.includes(current) ? current : '';
}

function showLabel(cell, label) {
  replace(cell, LABELS[label] ? badge(t(`messages.label.${label}`), LABELS[label]) : '');
  cell.dataset.label = label || '';
}

function showMessages(table, messages, mark) {
  const head = [t('messages.col.time'), t('messages.col.group'), t('messages.col.message'), t('messages.col.outcome'),
    t('messages.col.reply'), t('messages.col.label'), ''];
  const rows = messages.map((m) => {
    const labelCell = h('td', { class: 'label', 'data-label': head[5] });
    showLabel(labelCell, m.label);
    const reason = m.code ? reasonOf(m.code, m.reject || scoresFromReason(m.reason)) : m.reason;
    const row = h('tr', { dataset: { id: m.id, outcome: m.outcome } },
      h('td', { class: 'nowrap', 'data-label': head[0] }, when(m.time)),
      datum('td', { class: 'group', 'data-label': head[1] }, m.group),
      datum('td', { class: 'query', 'data-label': head[2] }, m.query),
      h('td', { class: 'result', 'data-label': head[3] }, badge(outcomeName(m.outcome), OUTCOMES[m.outcome] || 'muted'),
        m.code ? h('div', { class: 'reason muted small' }, reason) : datum('div', { class: 'reason muted small' }, reason)),
      h('td', { class: 'reply', 'data-label': head[4] }, m.reply ? h('details', {},
        datum('summary', {}, preview(m.reply)),
        datum('div', { class: 'reply-text markdown' }, renderMarkdown(m.reply)),
        m.references?.length ? h('div', { class: 'muted small' }, h('span', {}, t('messages.sources')), ' ',
          datum('span', {}, m.references.map((reference, i) => `[${i + 1}] ${reference}`).join(', '))) : null)
        : h('span', { class: 'muted' }, '—')),
      labelCell,
      h('td', { class: 'actions' }, h('div', { class: 'mark' },
        h('button', { type: 'button', class: 'mark-answer ghost', title: t('messages.markAnswerTitle') }, t('messages.markAnswer')),
        h('button', { type: 'button', class: 'mark-ignore ghost', title: t('messages.markIgnoreTitle') }, t('messages.markIgnore')))));
    row.querySelector('.mark-answer').addEventListener('click', () => mark(m, 'should_answer', row));
    row.querySelector('.mark-ignore').addEventListener('click', () => mark(m, 'should_ignore', row));
    return row;
  });
  replace(table,
    h('thead', {}, h('tr', {}, head.map((text) => h('th', {}, text)))),
    h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 7, class: 'muted empty' }, t('messages.empty')))));
}
