// Try it: ask as a group member would. The answer streams in token by token with numbered citations
// that open the passage they cite; a message the bot would ignore shows the reject stage's reasons.

import { streamEvents } from '../api.js';
import { h, replace, badge, card } from '../dom.js';
import { explainReject } from '../reject_explanation.js';

const OUTCOMES = { answered: 'ok', ignored: 'warn', failed: 'error' };
const STAGE_NAMES = {
  preprocess: 'clean up', reject: 'reject check', retrieve: 'retrieve', rerank: 'rerank', intention: 'intention',
  online_search: 'web search', generate: 'answer', check: 'check', extract: 'extract', work_time: 'working hours',
};

export async function render(root, ctx) {
  const input = h('textarea', { id: 'ask-input', rows: 3, placeholder: '像群成员一样提问，例如：茴香豆怎么部署到飞书？  (Ctrl+Enter sends)' });
  const group = h('input', { id: 'ask-group', type: 'text', class: 'narrow', value: 'web-console', title: 'The group this question counts as coming from' });
  const button = h('button', { id: 'ask-button', type: 'button' }, 'Send');
  const stages = h('div', { id: 'stages', class: 'stages' });
  const outcome = h('div', { id: 'outcome', class: 'outcome' });
  const answer = h('div', { id: 'answer', class: 'answer', 'aria-live': 'polite' });
  const citations = h('ol', { id: 'citations', class: 'citations' });
  const chunkView = h('section', { id: 'chunk-view', class: 'card chunk-view', hidden: true });
  const why = h('section', { id: 'why', class: 'card why', hidden: true });
  let running = null;

  function openPassage(passage) {
    chunkView.hidden = false;
    for (const c of citations.querySelectorAll('.citation')) c.classList.toggle('active', c.dataset.n === String(passage.n));
    replace(chunkView, h('div', { class: 'panel-head' }, h('h3', {}, `[${passage.n}] ${passage.reference}`),
      h('button', { type: 'button', class: 'ghost', onclick: () => { chunkView.hidden = true; } }, 'Close')),
    h('pre', { class: 'chunk-text' }, passage.text || 'The text of this passage was not sent.'));
  }

  // After the stream ends, [n] in the answer becomes a link to passage n.
  function linkCitations(text, byN) {
    const parts = text.split(/(\[\d+\])/);
    return parts.map((part) => {
      const m = part.match(/^\[(\d+)\]$/);
      const passage = m && byN.get(Number(m[1]));
      return passage ? h('button', { type: 'button', class: 'link cite-ref', onclick: () => openPassage(passage) }, part) : part;
    });
  }

  async function ask() {
    const query = input.value.trim();
    if (!query) {
      ctx.toast('Type a message first.', 'error');
      return;
    }
    if (running) return;
    running = true;
    button.disabled = true;
    button.textContent = 'Asking…';
    replace(stages);
    replace(outcome, badge('thinking', 'info'));
    replace(answer);
    answer.classList.add('streaming');
    delete answer.dataset.done;
    replace(citations);
    chunkView.hidden = true;
    why.hidden = true;
    let text = '';
    let tokens = 0;
    try {
      for await (const { event, data } of streamEvents('/api/ask', { query, group_id: group.value.trim() || 'web-console' })) {
        if (event === 'stage') {
          stages.append(h('span', { class: 'stage' }, STAGE_NAMES[data.stage] || data.stage));
        } else if (event === 'token') {
          text += data.text;
          tokens += 1;
          answer.textContent = text;
          answer.dataset.tokens = String(tokens);
        } else if (event === 'done') {
          finish(data, text);
        } else if (event === 'error') {
          ctx.toast(data.message || data.error?.message || 'The question failed.', 'error');
        }
      }
    } catch (err) {
      ctx.report(err);
      replace(outcome, badge('failed', 'error'));
    } finally {
      answer.classList.remove('streaming');
      running = null;
      button.disabled = false;
      button.textContent = 'Send';
    }
  }

  function finish(done, streamed) {
    const passages = done.passages || [];
    const byN = new Map(passages.map((p) => [p.n, p]));
    replace(outcome, badge(done.outcome, OUTCOMES[done.outcome] || 'muted'), h('code', { class: 'code' }, done.code),
      done.reason ? h('span', { class: 'reason' }, done.reason) : null);
    const reply = done.reply || streamed;
    if (reply) replace(answer, linkCitations(reply, byN));
    else replace(answer, h('span', { class: 'muted' }, done.outcome === 'ignored' ? 'No answer: the bot would stay silent in the group.' : 'No answer.'));
    answer.dataset.done = done.outcome;
    const cited = passages.length ? passages
      : (done.references || []).map((reference, i) => ({ n: i + 1, reference, text: '' }));
    // Passages the answer cites come first; the others were retrieved and given to the model unused.
    const used = new Set([...reply.matchAll(/\[(\d+)\]/g)].map((m) => Number(m[1])));
    const ordered = [...cited].sort((a, b) => Number(used.has(b.n)) - Number(used.has(a.n)) || a.n - b.n);
    replace(citations, ordered.map((p) => h('li', {},
      h('button', { type: 'button', class: `citation${used.size && !used.has(p.n) ? ' unused' : ''}`, dataset: { n: String(p.n) }, onclick: () => openPassage(p),
        title: used.size && !used.has(p.n) ? 'Retrieved, not cited by the answer' : 'Cited by the answer' },
        h('span', { class: 'cite-n' }, `[${p.n}]`), ` ${p.reference}`))),
      used.size && ordered.some((p) => !used.has(p.n))
        ? h('li', { class: 'muted small' }, 'Dashed: retrieved and given to the model, not cited.') : null);
    if (done.reject) {
      replace(why, explainReject(done.reject, done.outcome));
      why.hidden = false;
    }
  }

  button.addEventListener('click', ask);
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) ask();
  });

  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Try it'),
      h('p', { class: 'lead' }, 'Ask as a group member would. The console runs the same pipeline as the group: the reject check, retrieval, the answer.')),
    card(null, input, h('div', { class: 'row' }, button, h('label', { class: 'muted small' }, 'group ', group), stages)),
    h('div', { class: 'grid-2 wide-left' },
      card('Answer', outcome, answer, h('h3', { class: 'small-head' }, 'Citations'), citations),
      h('div', {}, chunkView, why)),
  );
}
