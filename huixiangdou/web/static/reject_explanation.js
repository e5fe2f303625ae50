// The reject stage's evidence (session.debug['reject']) in words an admin can act on: the verdict,
// the score against the threshold, the nearest examples of each kind, and the words that weighed.

import { h, badge } from './dom.js';
import { num } from './format.js';

const FEATURE_NAMES = {
  examples: 'Likeness to the examples',
  cosine: 'Closest chunk (meaning)',
  cosine_top5: 'Five closest chunks (meaning)',
  bm25: 'Closest chunk (shared words, log BM25)',
  coverage: 'Share of its words found in one chunk',
  specific_words: 'Words specific to the documents',
  specificity: 'How specific those words are',
  known_words: 'Share of its words the documents use',
};

export function explainReject(reject, outcome) {
  const score = reject.reject_score ?? reject.score;
  const threshold = reject.threshold;
  const answer = reject.answer ?? (typeof score === 'number' && typeof threshold === 'number' && score >= threshold);
  const verdict = answer
    ? h('p', { class: 'verdict' }, badge('on-topic', 'ok'), ' The reject stage let this message through.')
    : h('p', { class: 'verdict' }, badge('chatter', 'warn'), ' The bot stays silent: this reads as chatter, not a question about the knowledge base.');
  const parts = [h('h3', {}, outcome === 'ignored' && !answer ? 'Why the bot ignored it' : 'How the reject stage judged it'), verdict];
  if (typeof score === 'number') parts.push(meter(score, threshold));
  if (reject.rule) parts.push(h('p', { class: 'note' }, badge('rule', 'muted'), ` ${reject.rule}`));

  const near = [];
  if (reject.nearest_on_topic?.length) near.push(nearest('Nearest on-topic examples', reject.nearest_on_topic, 'ok'));
  if (reject.nearest_chatter?.length) near.push(nearest('Nearest chatter examples', reject.nearest_chatter, 'warn'));
  if (near.length) parts.push(h('div', { class: 'grid-2 tight' }, near));

  const words = [];
  if (reject.specific_words?.length) {
    words.push(h('div', {}, h('h4', {}, 'Words specific to the knowledge base'),
      h('div', { class: 'chips' }, reject.specific_words.map((w) => h('span', { class: 'chip', title: `specificity ${w.specificity}` }, w.word, h('small', {}, ` ${num(w.specificity, 2)}`))))));
  } else {
    words.push(h('div', {}, h('h4', {}, 'Words specific to the knowledge base'), h('p', { class: 'muted small' }, 'None: no word of this message is special to the documents.')));
  }
  if (reject.ngrams_for?.length || reject.ngrams_against?.length) {
    words.push(h('div', {}, h('h4', {}, 'Fragments that weighed'),
      h('div', { class: 'chips' },
        (reject.ngrams_for || []).map((g) => h('span', { class: 'chip chip-for', title: 'pushed towards answering' }, `+ ${g}`)),
        (reject.ngrams_against || []).map((g) => h('span', { class: 'chip chip-against', title: 'pushed towards ignoring' }, `− ${g}`)))));
  }
  parts.push(h('div', { class: 'grid-2 tight' }, words));

  if (reject.evidence) {
    const rows = Object.entries(reject.evidence)
      .sort((a, b) => Math.abs(b[1].contribution) - Math.abs(a[1].contribution))
      .map(([name, e]) => h('tr', {},
        h('td', {}, FEATURE_NAMES[name] || name.replaceAll('_', ' ')),
        h('td', { class: 'num' }, num(e.value)),
        h('td', { class: `num ${e.contribution >= 0 ? 'pos' : 'neg'}` }, `${e.contribution >= 0 ? '+' : ''}${num(e.contribution, 2)}`)));
    parts.push(h('details', {}, h('summary', {}, 'Evidence behind the score'),
      h('table', { class: 'table compact' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Feature'), h('th', {}, 'Value'), h('th', {}, 'Pushes the score'))),
        h('tbody', {}, rows))));
  }
  const chunk = reject.best_chunk;
  if (chunk) {
    parts.push(h('div', { class: 'best-chunk' }, h('h4', {}, 'Closest passage in the knowledge base'),
      h('div', { class: 'muted small' }, `${chunk.reference} · cosine ${num(chunk.cosine)}`), h('blockquote', {}, chunk.text)));
  }
  return parts;
}

function meter(score, threshold) {
  const mark = (v) => `${(Math.min(1, Math.max(0, v)) * 100).toFixed(1)}%`;
  const fill = h('div', { class: `meter-fill ${typeof threshold === 'number' && score >= threshold ? 'ok' : 'warn'}` });
  fill.style.width = mark(score);
  const line = h('div', { class: 'meter-threshold', title: `threshold ${num(threshold)}` });
  if (typeof threshold === 'number') line.style.left = mark(threshold);
  return h('div', { class: 'meter-wrap' },
    h('div', { class: 'meter-label' }, h('span', {}, `P(on-topic) ${num(score)}`),
      h('span', { class: 'muted' }, typeof threshold === 'number' ? `threshold ${num(threshold)}` : '')),
    h('div', { class: 'meter' }, fill, line));
}

function nearest(title, items, kind) {
  return h('div', {}, h('h4', {}, title),
    h('ul', { class: `nearest nearest-${kind}` }, items.map((e) => h('li', {}, h('span', {}, e.text), h('span', { class: 'muted small' }, ` cos ${num(e.cosine, 2)}`)))));
}
