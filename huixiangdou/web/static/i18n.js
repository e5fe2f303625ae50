// Every text the console shows, from one catalogue per language (i18n/zh-CN.js, i18n/en.js): the
// browser's language picks one, a switch in the top bar overrides it and is remembered.
// It does not translate data (file names, messages, answers): those are shown as they are.

import en from './i18n/en.js';
import zhCN from './i18n/zh-CN.js';

export const CATALOGUES = { 'zh-CN': zhCN, en };
const STORAGE_KEY = 'hxd.lang';

function stored() {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null; // storage refused (a locked-down profile): follow the browser
  }
}

// The remembered choice, else Chinese for any zh-* browser, else English.
function initial() {
  const choice = stored();
  if (choice && CATALOGUES[choice]) return choice;
  return (navigator.language || '').toLowerCase().startsWith('zh') ? 'zh-CN' : 'en';
}

let lang = initial();

export function currentLang() {
  return lang;
}

export function setLang(next) {
  if (!CATALOGUES[next]) return;
  lang = next;
  try {
    localStorage.setItem(STORAGE_KEY, next);
  } catch {
    // not remembered; this page still switches
  }
  document.documentElement.lang = next;
}

// The message `key` of the active catalogue with {name} replaced by params.name. A missing key shows
// as itself, so the page test finds it.
export function t(key, params = {}) {
  const text = CATALOGUES[lang][key];
  if (text === undefined) return key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

// The fixed text of index.html: data-i18n (text), data-i18n-placeholder, data-i18n-title, data-i18n-aria.
export function translateStatic(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll('[data-i18n-aria]')) el.setAttribute('aria-label', t(el.dataset.i18nAria));
}
