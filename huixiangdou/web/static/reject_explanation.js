// The reject stage's evidence (session.debug['reject']) in words an admin can act on: the verdict,
// the score against the threshold, the nearest examples of each kind, and the words that weighed.
// Also the outcome of a message (answered, ignored and why, failed) in the active language.

import { h, badge, datum } from './dom.js';
import { t } from './i18n.js';
import { num } from './format.js';

const FEATURES = ['examples', 'cosine', 'cosine_top5', 'bm25', 'coverage', 'specific_words', 'specificity', 'known_words'];
const CODES = ['SUCCESS', 'NOT_A_QUESTION', 'QUESTION_TOO_SHORT', 'UNRELATED', 'NO_SEARCH_RESULT', 'BAD_ANSWER',
  'SECURITY', 'LLM_ERROR', 'NOT_WORK_TIME', 'INTERNAL_ERROR'];
const CJK = /[\u3400-\u9fff\uf900-\ufaff]/;

// Why the bot did what it did, from the outcome code (and the score when the record has it).
export function reasonOf(code, reject) {
  const reason = CODES.includes(code) ? t(`reason.${code}`) : t('reason.other', { code });
  const score = reject?.reject_score ?? reject?.score;
  if (typeof score !== 'number' || typeof reject?.threshold !== 'number') return reason;
  return t(score < reject.threshold ? 'reason.below' : 'reason.above',
    { reason, score: score.toFixed(2), threshold: reject.threshold.toFixed(2) });
}

// The score and threshold a saved record's reason names ("… (P(on-topic) 0.03 below the threshold 0.41)").
export function scoresFromReason(reason) {
  const m = String(reason || '').match(/P\(on-topic\) ([\d.]+) .*?threshold ([\d.]+)/);
  return m ? { reject_score: Number(m[1]), threshold: Number(m[2]) } : null;
}

export function outcomeName(outcome) {
  return ['answered', 'ignored', 'failed'].includes(outcome) ? t(`outcome.${outcome}`) : outcome;
}

// A fragment an admin can read: two or more Chinese characters, or a whole word of the message.
// Character n-grams of a Latin word ("e", "ku") say nothing and are left out.
export function readableFragment(fragment, query) {
  const text = String(fragment || '').trim();
  if (!text) return false;
  if (CJK.test(text)) return [...text].length >= 2;
  if (text.length < 2) return false;
  const escaped = text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^\\p{L}\\p{N}])${escaped}($|[^\\p{L}\\p{N}])`, 'iu').test(String(query || ''));
}

export function explainReject(reject, outcome, query = '') {
  const score = reject.reject_score ?? reject.score;
  const threshold = reject.threshold;
  const answer = reject.answer ?? (typeof score === 'number' && typeof threshold === 'number' && score >= threshold);
  const verdict = answer
    ? h('p', { class: 'verdict' }, badge(t('reject.onTopic'), 'ok'), ' ', h('span', {}, t('reject.letThrough')))
    : h('p', { class: 'verdict' }, badge(t('reject.chatter'), 'warn'), ' ', h('span', {}, t('reject.silent')));
  const parts = [h('h3', {}, outcome === 'ignored' && !answer ? t('reject.whyIgnored') : t('reject.howJudged')), verdict];
  if (typeof score === 'number') parts.push(meter(score, threshold));
  if (reject.rule) parts.push(h('p', { class: 'note' }, badge(t('reject.rule'), 'muted'), ' ', h('span', {}, t('reject.ruleText'))));

  const near = [];
  if (reject.nearest_on_topic?.length) near.push(nearest(t('reject.nearestOnTopic'), reject.nearest_on_topic, 'ok'));
  if (reject.nearest_chatter?.length) near.push(nearest(t('reject.nearestChatter'), reject.nearest_chatter, 'warn'));
  if (near.length) parts.push(h('div', { class: 'grid-2 tight' }, near));

  const words = [h('div', { id: 'specific-words' }, h('h4', {}, t('reject.specificWords')),
    reject.specific_words?.length
      ? h('div', { class: 'chips' }, reject.specific_words.map((w) => h('span', { class: 'chip', title: t('reject.specificity', { n: num(w.specificity, 2) }) },
        datum('span', {}, w.word), h('small', {}, ` ${num(w.specificity, 2)}`))))
      : h('p', { class: 'muted small' }, t('reject.noSpecificWords')))];
  if (reject.entities?.length) {
    words.push(h('div', { id: 'matched-entities' }, h('h4', {}, t('reject.entities')),
      h('div', { class: 'chips' }, reject.entities.map((e) => h('span', {
        class: 'chip',
        title: t('reject.entityWhere', { chunks: e.chunks, files: e.files }) + (e.found_in ? ` · ${e.found_in}` : ''),
      }, datum('span', {}, e.entity), h('small', {}, ` ${e.chunks}`))))));
  }
  const pushedFor = (reject.ngrams_for || []).filter((g) => readableFragment(g, query));
  const pushedAgainst = (reject.ngrams_against || []).filter((g) => readableFragment(g, query));
  if (pushedFor.length || pushedAgainst.length) {
    words.push(h('div', { id: 'weighed-words' }, h('h4', {}, t('reject.weighed')),
      h('div', { class: 'chips' },
        pushedFor.map((g) => h('span', { class: 'chip chip-for', title: t('reject.towardsAnswer') }, '+ ', datum('span', {}, g))),
        pushedAgainst.map((g) => h('span', { class: 'chip chip-against', title: t('reject.towardsIgnore') }, '− ', datum('span', {}, g))))));
  }
  parts.push(h('div', { class: 'grid-2 tight' }, words));

  if (reject.evidence) {
    const rows = Object.entries(reject.evidence)
      .sort((a, b) => Math.abs(b[1].contribution) - Math.abs(a[1].contribution))
      .map(([name, e]) => h('tr', {},
        FEATURES.includes(name) ? h('td', {}, t(`feature.${name}`)) : datum('td', {}, name.replaceAll('_', ' ')),
        h('td', { class: 'num' }, num(e.value)),
        h('td', { class: `num ${e.contribution >= 0 ? 'pos' : 'neg'}` }, `${e.contribution >= 0 ? '+' : ''}${num(e.contribution, 2)}`)));
    parts.push(h('details', {}, h('summary', {}, t('reject.evidence')),
      h('div', { class: 'table-scroll' }, h('table', { class: 'table compact' },
        h('thead', {}, h('tr', {}, h('th', {}, t('reject.feature')), h('th', {}, t('reject.value')), h('th', {}, t('reject.pushes')))),
        h('tbody', {}, rows)))));
  }
  const chunk = reject.best_chunk;
  if (chunk) {
    parts.push(h('div', { class: 'best-chunk' }, h('h4', {}, t('reject.closestPassage')),
      h('div', { class: 'muted small' }, datum('span', {}, chunk.reference), ' · ', h('span', {}, t('reject.cosine', { n: num(chunk.cosine) }))),
      datum('blockquote', {}, chunk.text)));
  }
  return parts;
}

function meter(score, threshold) {
  const mark = (v) => `${(Math.min(1, Math.max(0, v)) * 100).toFixed(1)}%`;
  const fill = h('div', { class: `meter-fill ${typeof threshold === 'number' && score >= threshold ? 'ok' : 'warn'}` });
  fill.style.width = mark(score);
  const line = h('div', { class: 'meter-threshold', title: t('reject.threshold', { n: num(threshold) }) });
  if (typeof threshold === 'number') line.style.left = mark(threshold);
  return h('div', { class: 'meter-wrap' },
    h('div', { class: 'meter-label' }, h('span', {}, t('reject.score', { n: num(score) })),
      typeof threshold === 'number' ? h('span', { class: 'muted' }, t('reject.threshold', { n: num(threshold) })) : null),
    h('div', { class: 'meter' }, fill, line));
}

function nearest(title, items, kind) {
  return h('div', {}, h('h4', {}, title),
    h('ul', { class: `nearest nearest-${kind}` }, items.map((e) => h('li', {}, datum('span', {}, e.text), ' ',
      h('span', { class: 'muted small' }, t('reject.cos', { n: num(e.cosine, 2) }))))));
}
