// Examples and calibration: the on-topic and chatter lists the reject model learns from (add, edit,
// delete, import a file), recalibration, and the result as two score distributions with P/R/F1.

import { api } from '../api.js';
import { BuildProgress } from '../build_progress.js';
import { h, replace, badge, card, facts, datum } from '../dom.js';
import { t } from '../i18n.js';
import { when, num, pct, NONE } from '../format.js';
import { drawHistogram } from '../histogram.js';

const SVG_NS = 'http://www.w3.org/2000/svg';

export async function render(root, ctx) {
  const lists = { good: h('ul', { id: 'good-list', class: 'examples' }), bad: h('ul', { id: 'bad-list', class: 'examples' }) };
  const heads = { good: h('h2', {}), bad: h('h2', {}) };
  const filters = {};
  const text = h('textarea', { id: 'example-text', rows: 2, placeholder: t('examples.placeholder') });
  const importKind = h('select', { id: 'import-kind' }, h('option', { value: 'good' }, t('examples.asGood')), h('option', { value: 'bad' }, t('examples.asBad')));
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
    progress.setLastBuilt(cal.calibrated_at);
    return cal;
  };

  const progress = new BuildProgress(progressEl, {
    report: ctx.report,
    onFinish: async (status) => {
      if (status.state === 'done') ctx.toast(t('examples.recalibrated'), 'ok');
      else if (status.state === 'failed') ctx.toast(status.message || t('examples.calibrationFailed'), 'error', { data: Boolean(status.message) });
      await loadCalibration().catch(ctx.report);
    },
  });

  function showList(kind, items) {
    heads[kind].replaceChildren(h('span', {}, t(`examples.${kind}.title`)), ' ', h('span', { class: 'count' }, String(items.length)));
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
    const span = datum('span', { class: 'example-text' }, item.text);
    const li = h('li', { dataset: { id: String(item.id), text: item.text } }, span,
      h('span', { class: 'item-actions' },
        h('button', { type: 'button', class: 'edit ghost', onclick: () => edit() }, t('common.edit')),
        h('button', { type: 'button', class: 'delete ghost danger', onclick: () => remove() }, t('common.delete'))));

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
        h('button', { type: 'button', class: 'save', onclick: save }, t('common.save')),
        h('button', { type: 'button', class: 'ghost', onclick: () => loadExamples().catch(ctx.report) }, t('common.cancel'))));
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
      ctx.toast(t('examples.typeFirst'), 'error');
      return;
    }
    try {
      await api.post('/api/examples', { kind, text: value });
      text.value = '';
      ctx.toast(t(`examples.${kind}.added`), 'ok');
      await loadExamples();
    } catch (err) {
      ctx.report(err.code === 'duplicate' ? new Error(t('examples.duplicate')) : err);
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
      ctx.toast(t('examples.imported', { added: res.added, duplicates: res.duplicates }), 'ok');
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
    filters[kind] = h('input', { type: 'search', class: 'filter', placeholder: t('examples.filter'), oninput: () => applyFilter(kind) });
    return card(null, h('div', { class: 'panel-head' }, heads[kind], filters[kind]),
      h('p', { class: 'muted small' }, t(`examples.${kind}.hint`)), lists[kind]);
  };

  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, t('title.examples'), ' ', datum('span', { class: 'kb-name' }, ctx.kb)),
      h('p', { class: 'lead' }, t('examples.lead'))),
    h('div', { class: 'grid-2 wide-left' },
      card(t('examples.calibration'), chart, metrics),
      card(t('examples.change'),
        text,
        h('div', { class: 'row' },
          h('button', { id: 'add-good', type: 'button', onclick: () => add('good') }, t('examples.addGood')),
          h('button', { id: 'add-bad', type: 'button', class: 'secondary', onclick: () => add('bad') }, t('examples.addBad'))),
        h('div', { class: 'import' },
          h('h3', {}, t('examples.import')),
          h('p', { class: 'muted small' }, t('examples.importHint')),
          h('div', { class: 'row' }, importKind, h('label', { class: 'file-label' }, importFile, t('examples.chooseFile')))),
        h('div', { class: 'import' },
          h('h3', {}, t('examples.recalibrate')),
          h('p', { class: 'muted small' }, t('examples.recalibrateHint')),
          h('button', { id: 'calibrate-button', type: 'button', onclick: calibrate }, t('examples.recalibrate')),
          progressEl))),
    h('div', { class: 'grid-2' }, column('good'), column('bad')),
  );

  const [, cal, status] = await Promise.all([loadExamples(), loadCalibration(), api.get('/api/rebuild')]);
  progress.setLastBuilt(cal?.calibrated_at);
  progress.show(status, status.state === 'running');
  return () => progress.stop();
}

function showMetrics(el, cal) {
  const m = cal.metrics;
  const tiles = h('div', { class: 'tiles' },
    tile(t('examples.threshold'), num(cal.threshold)),
    tile(t('examples.precision'), m ? pct(m.precision) : NONE),
    tile(t('examples.recall'), m ? pct(m.recall) : NONE),
    tile(t('examples.f1'), m ? num(m.f1) : NONE));
  replace(el, tiles,
    facts([
      [t('examples.target'), cal.target ? datum('code', {}, cal.target) : NONE],
      [t('examples.calibrated'), cal.calibrated_at ? h('span', { class: 'calibrated-at' }, when(cal.calibrated_at)) : t('kb.notCalibrated')],
      [t('examples.examples'), t('examples.counts', { good: cal.examples?.good ?? 0, bad: cal.examples?.bad ?? 0 })],
    ]),
    cal.rule ? h('p', { class: 'note' }, badge(t('reject.rule'), 'warn'), ' ', h('span', {}, t('examples.ruleNote'))) : null);
  el.dataset.calibratedAt = cal.calibrated_at || '';
}

function tile(name, value) {
  return h('div', { class: 'tile' }, h('div', { class: 'tile-value' }, value), h('div', { class: 'tile-name' }, name));
}
