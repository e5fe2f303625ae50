// The rebuild/recalibration job as a progress bar: polls GET /api/rebuild every 500 ms while the
// job runs (the Knowledge base and the Examples pages share the one job) and says how it ended.
// A measured step (done of total) fills the bar, with the time left when the server estimates it;
// an unmeasured one shows a moving bar and the seconds so far.

import { api } from './api.js';
import { h, replace, badge, datum } from './dom.js';
import { t } from './i18n.js';
import { seconds, elapsed, when } from './format.js';

const PHASES = ['parse', 'embed', 'calibrate', 'save', 'load'];
const STATES = { idle: 'muted', running: 'info', done: 'ok', failed: 'error', cancelled: 'muted' };

export class BuildProgress {
  constructor(el, { onFinish, report }) {
    this.el = el;
    this.onFinish = onFinish;
    this.report = report;
    this.timer = null;
    this.ticker = null;
    this.stopped = false;
    this.last = null; // when the store now answering was built, for an idle job
    this.runningSince = null;
  }

  // When the store answering now was built (the job is idle after a startup build too).
  setLastBuilt(iso) {
    this.last = iso || null;
  }

  // Show `status`; keep polling while it runs, and call onFinish once when a run we watched ends.
  show(status, watching = false) {
    if (this.stopped) return;
    this.status = status;
    this.el.dataset.state = status.state;
    if (status.state === 'running') {
      if (this.runningSince === null) this.runningSince = startedAt(status);
    } else {
      this.runningSince = null;
    }
    this.draw();
    clearTimeout(this.timer);
    clearInterval(this.ticker);
    if (status.state === 'running') {
      this.timer = setTimeout(() => this.poll(), 500);
      // The seconds count on between polls (a slow poll must not freeze the page).
      this.ticker = setInterval(() => this.draw(), 1000);
    } else if (watching && this.onFinish) {
      this.onFinish(status);
    }
  }

  draw() {
    if (this.stopped || !this.status) return;
    replace(this.el, ...this.describe(this.status));
  }

  async poll() {
    try {
      this.show(await api.get('/api/rebuild'), true);
    } catch (err) {
      this.report(err);
      this.timer = setTimeout(() => this.poll(), 2000);
    }
  }

  // Ask the server to stop the running build; the poll then shows it "cancelled".
  async cancel() {
    try {
      this.show(await api.post('/api/rebuild/cancel'), true);
    } catch (err) {
      this.report(err);
    }
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.ticker);
  }

  describe(status) {
    const head = h('div', { class: 'progress-head' }, badge(t(`build.state.${status.state}`), STATES[status.state] || 'muted'));
    if (status.state === 'idle') {
      head.append(h('span', { class: 'muted' }, this.last ? t('build.lastBuilt', { when: when(this.last) }) : t('build.none')));
      return [head];
    }
    if (status.state === 'running') return this.running(head, status);
    if (status.state === 'cancelled') {
      head.append(h('span', { class: 'muted' }, t('build.cancelled')));
      return [head];
    }
    if (status.state === 'failed') {
      head.append(status.message ? datum('span', { class: 'error-text' }, status.message) : h('span', { class: 'error-text' }, t('build.failed')));
      return [head];
    }
    const r = status.report;
    if (status.origin === 'earlier' && this.last) {
      // The build that made the store answering now ran before the console started: say when.
      head.append(h('span', { class: 'muted' }, t('build.lastBuilt', { when: when(this.last) })));
    }
    if (r) {
      head.append(h('span', {}, t('build.doneReport', {
        seconds: seconds(r.seconds), indexed: r.indexed.length, reused: r.reused.length,
        skipped: r.skipped.length, deleted: r.deleted.length, chunks: r.chunks,
      })));
    } else {
      head.append(h('span', {}, t('build.done')));
    }
    const skipped = (r?.skipped || []).map((s) => h('li', {}, datum('code', {}, s.source), ' ', datum('span', {}, s.reason)));
    return [head, skipped.length ? h('ul', { class: 'skipped-list' }, skipped) : null];
  }

  running(head, status) {
    const phase = PHASES.includes(status.phase) ? status.phase : null;
    const total = Number(status.total) || 0;
    const done = Number(status.done) || 0;
    // "0 of 1" is no measure: a step counted in ones moves the bar only when it ends.
    const measured = total > 1 || (total === 1 && done === 1);
    const share = measured ? Math.min(1, done / total) : 0;
    const since = this.runningSince ?? performance.now();
    const spent = (performance.now() - since) / 1000;
    const step = phase === 'calibrate' && measured ? t('build.fold', { done, total })
      : measured ? t('build.count', { done, total }) : null;
    head.append(h('span', { class: 'phase' }, phase ? t(`build.phase.${phase}`) : t('build.starting')),
      step ? h('span', { class: 'step' }, step) : null,
      typeof status.eta_s === 'number' && status.eta_s >= 0
        ? h('span', { class: 'muted eta' }, t('build.eta', { time: elapsed(status.eta_s) }))
        : h('span', { class: 'muted elapsed' }, t('build.elapsed', { time: elapsed(spent) })),
      h('button', { id: 'cancel-build-button', class: 'ghost danger', type: 'button', onclick: () => this.cancel(),
        title: t('build.cancelTitle') }, t('build.cancel')));
    const fill = h('div', { class: `bar-fill${measured ? '' : ' indeterminate'}` });
    fill.style.width = measured ? `${(share * 100).toFixed(1)}%` : '30%';
    const bar = h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100 }, fill);
    if (measured) bar.setAttribute('aria-valuenow', String(Math.round(share * 100)));
    return [head, bar];
  }
}

// The moment the job started, on this page's clock: the server's started_at when it can be read
// (a page opened mid-build counts from the real start), now otherwise.
function startedAt(status) {
  const start = Date.parse(status.started_at || '');
  if (Number.isNaN(start)) return performance.now();
  return performance.now() - Math.max(0, Date.now() - start);
}
