// How numbers and times read on the pages (units from the active catalogue).

import { t } from './i18n.js';

export const NONE = '—';

export function bytes(n) {
  if (n === null || n === undefined) return NONE;
  if (n < 1024) return t('unit.bytes', { n });
  if (n < 1024 * 1024) return t('unit.kb', { n: (n / 1024).toFixed(1) });
  return t('unit.mb', { n: (n / 1024 / 1024).toFixed(1) });
}

export function when(iso) {
  if (!iso) return NONE;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const pad = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function num(x, digits = 3) {
  return typeof x === 'number' ? x.toFixed(digits) : NONE;
}

export function pct(x) {
  return typeof x === 'number' ? `${(x * 100).toFixed(1)} %` : NONE;
}

export function seconds(s) {
  if (typeof s !== 'number') return NONE;
  return s < 60 ? t('unit.seconds', { n: s.toFixed(1) })
    : t('unit.minutes', { m: Math.floor(s / 60), s: Math.round(s % 60) });
}

// Whole seconds, for a wait that is still going.
export function elapsed(s) {
  const whole = Math.max(0, Math.floor(s));
  return whole < 60 ? t('unit.seconds', { n: whole }) : t('unit.minutes', { m: Math.floor(whole / 60), s: whole % 60 });
}
