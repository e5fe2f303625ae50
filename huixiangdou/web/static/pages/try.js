// Try it: ask as a group member would. The answer streams in token by token, rendered as Markdown,
// with numbered citations that open the passage they cite; a message the bot would ignore shows the
// reject stage's reasons, and an answer the worker withheld or replaced says so and why.

import { streamEvents } from '../api.js';
import { h, replace, badge, card, datum } from '../dom.js';
import { t } from '../i18n.js';
import { renderMarkdown } from '../markdown.js';
import { explainReject, outcomeName, reasonOf } from '../reject_explanation.js';
import { waiting } from '../wait.js';

const OUTCOMES = { answered: 'ok', ignored: 'warn', failed: 'error' };
const STAGES = ['preprocess', 'reject', 'retrieve', 'rerank', 'intention', 'online_search', 'generate', 'check', 'extract', 'work_time'];
const DEGENERATE = ['empty', 'scaffold', 'loop', 'echo', 'unsupported', 'cut'];

export async function render(root, ctx) {
  const input = h('textarea', { id: 'ask-input', rows: 3, placeholder: t('try.placeholder') });
  const group = h('input', { id: 'ask-group', type: 'text', class: 'narrow', value: 'web-console', title: t('try.groupTitle'), dataset: { data: '' } });
  const button = h('button', { id: 'ask-button', type: 'button' }, t('try.send'));
  const stages = h('div', { id: 'stages', class: 'stages' });
  const waitEl = h('div', { id: 'ask-wait' });
  const outcome = h('div', { id: 'outcome', class: 'outcome' });
  const notice = h('div', { id: 'answer-notice', hidden: true });
  const answer = h('div', { id: 'answer', class: 'answer markdown', 'aria-live': 'polite', dataset: { data: '' } });
  const citations = h('ol', { id: 'citations', class: 'citations' });
  const chunkView = h('section', { id: 'chunk-view', class: 'card chunk-view', hidden: true });
  const why = h('section', { id: 'why', class: 'card why', hidden: true });
  let running = null;
  let byN = new Map();

  function openPassage(passage) {
    chunkView.hidden = false;
    for (const c of citations.querySelectorAll('.citation')) c.classList.toggle('active', c.dataset.n === String(passage.n));
    replace(chunkView, h('div', { class: 'panel-head' }, h('h3', {}, `[${passage.n}] `, datum('span', {}, passage.reference)),
      h('button', { type: 'button', class: 'ghost', onclick: () => { chunkView.hidden = true; } }, t('common.close'))),
    passage.text ? datum('pre', { class: 'chunk-text' }, passage.text) : h('pre', { class: 'chunk-text' }, t('try.noPassageText')));
    chunkView.scrollIntoView({ block: 'nearest' });
  }

  // [n] in the answer: a link to passage n once the passages are known, the plain text before.
  const cite = (n, text) => {
    const passage = byN.get(n);
    return passage ? h('button', { type: 'button', class: 'link cite-ref', dataset: { n: String(n) }, onclick: () => openPassage(passage) }, text) : null;
  };

  // At most one redraw a frame while tokens arrive; `done` cancels a pending one (its text is final).
  let frame = null;
  let text = '';
  function drawStreaming() {
    if (frame !== null) return;
    frame = requestAnimationFrame(() => {
      frame = null;
      replace(answer, renderMarkdown(text, { cite }));
    });
  }
  function cancelDraw() {
    if (frame !== null) cancelAnimationFrame(frame);
    frame = null;
  }

  async function ask() {
    const query = input.value.trim();
    if (!query) {
      ctx.toast(t('try.typeFirst'), 'error');
      return;
    }
    if (running) return;
    running = true;
    button.disabled = true;
    button.textContent = t('try.asking');
    replace(stages);
    replace(outcome, badge(t('try.thinking'), 'info'));
    replace(answer);
    notice.hidden = true;
    answer.classList.add('streaming');
    delete answer.dataset.done;
    delete answer.dataset.withheld;
    delete answer.dataset.replaced;
    replace(citations);
    chunkView.hidden = true;
    why.hidden = true;
    byN = new Map();
    text = '';
    let tokens = 0;
    const wait = waiting(t('try.waiting'));
    replace(waitEl, wait.el);
    const stopWaiting = () => { wait.stop(); replace(waitEl); };
    try {
      for await (const { event, data } of streamEvents('/api/ask', { query, group_id: group.value.trim() || 'web-console' })) {
        if (event === 'stage') {
          stages.append(h('span', { class: 'stage' }, STAGES.includes(data.stage) ? t(`stage.${data.stage}`) : String(data.stage)));
        } else if (event === 'token') {
          stopWaiting();
          text += data.text;
          tokens += 1;
          answer.dataset.tokens = String(tokens);
          drawStreaming();
        } else if (event === 'done') {
          stopWaiting();
          finish(data, text, query);
        } else if (event === 'error') {
          ctx.toast(data.message || data.error?.message || t('try.failed'), 'error', { data: Boolean(data.message || data.error?.message) });
        }
      }
    } catch (err) {
      ctx.report(err);
      replace(outcome, badge(outcomeName('failed'), 'error'));
    } finally {
      stopWaiting();
      answer.classList.remove('streaming');
      running = null;
      button.disabled = false;
      button.textContent = t('try.send');
    }
  }

  // The streamed words were not posted (the check or the degenerate-answer guard stopped them), or were
  // replaced by quoted sentences: say so, with the reason, above what is shown.
  function showNotice(kind, done, streamed) {
    const reasonCode = typeof done.degenerate === 'string' ? done.degenerate.split(':')[0].trim()
      : typeof done.withheld === 'string' ? done.withheld : null;
    const reason = DEGENERATE.includes(reasonCode) ? t(`degenerate.${reasonCode}`) : reasonOf(done.code, done.reject);
    const parts = [badge(t(`try.${kind}`), 'warn'), ' ', h('span', {}, t(`try.${kind}Text`)), ' ', h('span', { class: 'reason' }, reason)];
    if (kind === 'withheld' && streamed.trim()) {
      parts.push(h('details', {}, h('summary', {}, t('try.showWithheld')), datum('pre', { class: 'chunk-text withheld-text' }, streamed)));
    }
    replace(notice, h('p', { class: 'note' }, parts));
    notice.hidden = false;
  }

  function finish(done, streamed, query) {
    cancelDraw();
    const passages = done.passages || [];
    byN = new Map(passages.map((p) => [p.n, p]));
    replace(outcome, badge(outcomeName(done.outcome), OUTCOMES[done.outcome] || 'muted'), datum('code', { class: 'code' }, done.code),
      h('span', { class: 'reason' }, reasonOf(done.code, done.reject)));
    const reply = done.reply || '';
    const withheld = Boolean(done.withheld) || (!reply && streamed.trim() && done.outcome !== 'answered');
    const replaced = !withheld && (done.replaced === true || (done.replaced === undefined && reply && streamed.trim()
      && !reply.trim().startsWith(streamed.trim())));
    if (reply) replace(answer, renderMarkdown(reply, { cite }));
    else if (withheld) replace(answer);
    else replace(answer, h('span', { class: 'muted' }, done.outcome === 'ignored' ? t('try.silent') : t('try.noAnswer')));
    if (withheld) showNotice('withheld', done, streamed);
    else if (replaced) showNotice('replaced', done, streamed);
    answer.dataset.done = done.outcome;
    if (withheld) answer.dataset.withheld = 'true';
    if (replaced) answer.dataset.replaced = 'true';
    const cited = passages.length ? passages
      : (done.references || []).map((reference, i) => ({ n: i + 1, reference, text: '' }));
    if (!passages.length) byN = new Map(cited.map((p) => [p.n, p]));
    // Passages the answer cites come first; the others were retrieved and given to the model unused.
    const used = new Set([...reply.matchAll(/\[(\d+)\]/g)].map((m) => Number(m[1])));
    const ordered = [...cited].sort((a, b) => Number(used.has(b.n)) - Number(used.has(a.n)) || a.n - b.n);
    replace(citations, ordered.map((p) => h('li', {},
      h('button', { type: 'button', class: `citation${used.size && !used.has(p.n) ? ' unused' : ''}`, dataset: { n: String(p.n) }, onclick: () => openPassage(p),
        title: used.size && !used.has(p.n) ? t('try.unusedTitle') : t('try.citedTitle') },
        h('span', { class: 'cite-n' }, `[${p.n}]`), ' ', datum('span', {}, p.reference)))),
      used.size && ordered.some((p) => !used.has(p.n))
        ? h('li', { class: 'muted small' }, t('try.dashed')) : null);
    if (done.reject) {
      replace(why, explainReject(done.reject, done.outcome, query));
      why.hidden = false;
    }
  }

  button.addEventListener('click', ask);
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) ask();
  });

  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, t('title.try'), ' ', datum('span', { class: 'kb-name' }, ctx.kb)),
      h('p', { class: 'lead' }, t('try.lead'))),
    card(null, input, h('div', { class: 'row' }, button, h('label', { class: 'muted small' }, h('span', {}, t('try.group')), ' ', group), stages), waitEl),
    h('div', { class: 'grid-2 wide-left' },
      card(t('try.answer'), outcome, notice, answer, h('h3', { class: 'small-head' }, t('try.citations')), citations),
      h('div', {}, chunkView, why)),
  );
}
