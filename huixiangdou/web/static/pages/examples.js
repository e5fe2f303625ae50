// Examples and calibration: the on-topic and chatter lists the reject model learns from (add, edit,
// delete, import a file), recalibration, and the result as two score distributions with P/R/F1.

import { api } from '../api.js';
import { BuildProgress } from '../build_progress.js';
import { h, replace, badge, card, facts } from '../dom.js';
import { when, num, pct } from '../format.js';
import { drawHistogram } from '../histogram.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const KINDS = {
  good: { title: 'On-topic', hint: 'Questions the bot should answer', list: 'good-list' },
  bad: { title: 'Chatter', hint: 'Messages the bot should ignore', list: 'bad-list' },
};

export async function render(root, ctx) {
  const lists = { good: h('ul', { id: 'good-list', class: 'examples' }), bad: h('ul', { id: 'bad-list', class: 'examples' }) };
  const heads = { good: h('h2', {}), bad: h('h2', {}) };
  const filters = {};
  const text = h('textarea', { id: 'example-text', rows: 2, placeholder: '一个群里会问的问题，或一句闲聊…  (a question the group asks, or a chatter line)' });
  const importKind = h('select', { id: 'import-kind' }, h('option', { value: 'good' }, 'as on-topic'), h('option', { value: 'bad' }, 'as chatter'));
  const importFile = h('input', { id: 'import-file', type: 'file', accept: '.json,.txt,.csv,text/plain,application/json' });
  const chart = document.createElementNS(SVG_NS, 'svg');
  chart.id = 'calibration-chart';
  chart.setAttribute('class', 'chart');
  const metrics = h('div', { id: 'calibration-metrics' });
  const progressEl = h('div', { id: 'build-progress', class: 'progress' });
  let files = { good: '', bad: '' };

  const loadExamples = async () => {
    const data = await api.get('/api/examples');
    files = { good: data.good_file, bad: data.bad_file };
    for (const kind of ['good', 'bad']) showList(kind, data[kind]);
  };
  const loadCalibration = async () => {
    const cal = await api.get('/api/calibration');
    drawHistogram(chart, { good: cal.good_scores || [], bad: cal.bad_scores || [], threshold: cal.threshold });
    showMetrics(metrics, cal);
  };

  const progress = new BuildProgress(progressEl, {
    report: ctx.report,
    onFinish: async (status) => {
      if (status.state === 'done') ctx.toast('Recalibrated: the bot uses the new threshold now.', 'ok');
      else if (status.state === 'failed') ctx.toast(status.message || 'Calibration failed.', 'error');
      await loadCalibration().catch(ctx.report);
    },
  });

  function showList(kind, items) {
    heads[kind].replaceChildren(`${KINDS[kind].title} `, h('span', { class: 'count' }, String(items.length)));
    heads[kind].title = files[kind];
    replace(lists[kind], items.map((item) => exampleItem(kind, item)));
    applyFilter(kind);
  }

  function applyFilter(kind) {
    const needle = (filters[kind]?.value || '').trim().toLowerCase();
    for (const li of lists[kind].children) {
      li.hidden = Boolean(needle) && !li.dataset.text.toLowerCase().includes(needle);
    }
  }

  function exampleItem(kind, item) {
    const span = h('span', { class: 'example-text' }, item.text);
    const li = h('li', { dataset: { id: String(item.id), text: item.text } }, span,
      h('span', { class: 'item-actions' },
        h('button', { type: 'button', class: 'edit ghost', onclick: () => edit(), title: 'Edit' }, 'Edit'),
        h('button', { type: 'button', class: 'delete ghost danger', onclick: () => remove(), title: 'Delete' }, 'Delete')));

    function edit() {
      const input = h('input', { type: 'text', class: 'edit-input', value: item.text });
      const save = async () => {
        const value = input.value.trim();
        if (!value || value === item.text) { loadExamples().catch(ctx.report); return; }
        try {
          await api.put(`/api/examples/${kind}/${item.id}`, { text: value });
          await loadExamples();
        } catch (err) {
          ctx.report(err);
        }
      };
      input.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') save();
        if (e.key === 'Escape') loadExamples().catch(ctx.report);
      });
      replace(li, input, h('span', { class: 'item-actions' },
        h('button', { type: 'button', class: 'save', onclick: save }, 'Save'),
        h('button', { type: 'button', class: 'ghost', onclick: () => loadExamples().catch(ctx.report) }, 'Cancel')));
      input.focus();
    }

    async function remove() {
      try {
        await api.del(`/api/examples/${kind}/${item.id}`);
        await loadExamples();
      } catch (err) {
        ctx.report(err);
      }
    }
    return li;
  }

  async function add(kind) {
    const value = text.value.trim();
    if (!value) {
      ctx.toast('Type an example first.', 'error');
      return;
    }
    try {
      await api.post('/api/examples', { kind, text: value });
      text.value = '';
      ctx.toast(`Added to ${KINDS[kind].title.toLowerCase()} examples. Recalibrate to use it.`, 'ok');
      await loadExamples();
    } catch (err) {
      ctx.report(err.code === 'duplicate' ? new Error('That example is already in the list.') : err);
    }
  }

  importFile.addEventListener('change', async () => {
    const file = importFile.files[0];
    if (!file) return;
    const form = new FormData();
    form.append('kind', importKind.value);
    form.append('file', file, file.name);
    try {
      const res = await api.upload('/api/examples/import', form);
      ctx.toast(`Imported ${res.added} example(s); ${res.duplicates} already there.`, 'ok');
      await loadExamples();
    } catch (err) {
      ctx.report(err);
    }
    importFile.value = '';
  });

  async function calibrate() {
    try {
      progress.show(await api.post('/api/calibrate'), true);
    } catch (err) {
      ctx.report(err);
    }
  }

  const column = (kind) => {
    filters[kind] = h('input', { type: 'search', class: 'filter', placeholder: 'Filter…', oninput: () => applyFilter(kind) });
    return card(null, h('div', { class: 'panel-head' }, heads[kind], filters[kind]),
      h('p', { class: 'muted small' }, KINDS[kind].hint), lists[kind]);
  };

  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Examples & calibration'),
      h('p', { class: 'lead' }, 'The reject model learns from these two lists which group messages deserve an answer. Recalibrate after changing them.')),
    h('div', { class: 'grid-2 wide-left' },
      card('Calibration', chart, metrics),
      card('Change the examples',
        text,
        h('div', { class: 'row' },
          h('button', { id: 'add-good', type: 'button', onclick: () => add('good') }, '+ On-topic'),
          h('button', { id: 'add-bad', type: 'button', class: 'secondary', onclick: () => add('bad') }, '+ Chatter')),
        h('div', { class: 'import' },
          h('h3', {}, 'Import a file'),
          h('p', { class: 'muted small' }, 'A JSON list of strings, or one message per line.'),
          h('div', { class: 'row' }, importKind, h('label', { class: 'file-label' }, importFile, 'Choose file…'))),
        h('div', { class: 'import' },
          h('h3', {}, 'Recalibrate'),
          h('p', { class: 'muted small' }, 'Refits the reject model on the current examples; documents are reused.'),
          h('button', { id: 'calibrate-button', type: 'button', onclick: calibrate }, 'Recalibrate'),
          progressEl))),
    h('div', { class: 'grid-2' }, column('good'), column('bad')),
  );

  const [, , status] = await Promise.all([loadExamples(), loadCalibration(), api.get('/api/rebuild')]);
  progress.show(status, status.state === 'running');
  return () => progress.stop();
}

function showMetrics(el, cal) {
  const m = cal.metrics;
  const tiles = h('div', { class: 'tiles' },
    tile('Threshold', num(cal.threshold)),
    tile('Precision', m ? pct(m.precision) : '—'),
    tile('Recall', m ? pct(m.recall) : '—'),
    tile('F1', m ? num(m.f1) : '—'));
  replace(el, tiles,
    facts([
      ['Operating point', cal.target || '—'],
      ['Calibrated', cal.calibrated_at ? h('span', { class: 'calibrated-at' }, when(cal.calibrated_at)) : 'not calibrated'],
      ['Examples', `${cal.examples?.good ?? 0} on-topic, ${cal.examples?.bad ?? 0} chatter`],
    ]),
    cal.rule ? h('p', { class: 'note' }, badge('rule', 'warn'),
      ' Too few examples to learn from: the bot answers only messages with enough words specific to the knowledge base. Add examples and recalibrate.') : null);
  el.dataset.calibratedAt = cal.calibrated_at || '';
}

function tile(name, value) {
  return h('div', { class: 'tile' }, h('div', { class: 'tile-value' }, value), h('div', { class: 'tile-name' }, name));
}
