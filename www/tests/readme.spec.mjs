// The READMEs are executable: every ```js block marked `<!-- test: run -->` runs in Chromium, in
// Firefox (puppeteer-core over WebDriver BiDi) and in WebKitGTK (selenium-webdriver), in an
// empty page of the reference server's origin, importing the package as a plain ES module from
// /pkg/ (what `import ... from 'tidesync'` resolves to); it must finish without throwing or logging an
// error. Every ```ts and ```tsx block is type-checked (strict) as a module of a small project, named by
// a `<!-- file: NAME -->` line before it so blocks can import each other; `<!-- test: skip -->` skips one.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { baseUrl, closeEngines, ENGINES, openEngine } from './browser.mjs';

// One browser per engine for the whole file, a fresh context per test (browser.mjs's openEngine).
after(closeEngines);
import { api } from './app.mjs';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WWW = path.join(ROOT, 'www');
const READMES = ['README.md', 'pkg/README.md'];

/** The fenced blocks of a markdown file: { lang, code, line, marker, file }. */
export function blocks(markdown) {
  const out = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = lines[i].match(/^```(\w+)\s*$/);
    if (!open) continue;
    let j = i + 1;
    while (j < lines.length && !/^```\s*$/.test(lines[j])) j++;
    let k = i - 1;
    while (k >= 0 && lines[k].trim() === '') k--;
    const comment = k >= 0 ? lines[k].match(/^<!--\s*(test|file):\s*(\S+)\s*-->$/) : null;
    out.push({
      lang: open[1],
      code: lines.slice(i + 1, j).join('\n'),
      line: i + 1,
      marker: comment?.[1] === 'test' ? comment[2] : undefined,
      file: comment?.[1] === 'file' ? comment[2] : undefined,
    });
    i = j;
  }
  return out;
}

/** Runs one example in a new page of `browser` (`newPage()` of either driver); fails on a throw or a console error. */
async function runExample(t, browser, readme, block) {
  const origin = baseUrl();
  const code = block.code
    .replace(/from 'tidesync'/g, `from '${origin}/pkg/index.js'`)
    .replace(/from 'tidesync\/sw'/g, `from '${origin}/pkg/sw.js'`);
  assert.ok(!/from 'tidesync\/react'/.test(code), `${readme}:${block.line}: React examples cannot run without a bundler`);
  const page = await browser.newPage();
  const problems = [];
  const logs = [];
  page.on('console', (m) => {
    logs.push(`[${m.type()}] ${m.text()}`);
    if (m.type() === 'error') problems.push(`console.error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.stack ?? e}`));
  await page.goto(`${origin}/tests/pages/blank.html`);
  try {
    await page.evaluate(async (source) => {
      const url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
      try {
        await import(url);
      } finally {
        URL.revokeObjectURL(url);
      }
    }, code);
  } catch (err) {
    problems.push(`threw: ${err.message}`);
  }
  if (problems.length) t.diagnostic(`${readme}:${block.line} console:\n${logs.join('\n')}`);
  assert.deepEqual(problems, [], `the example at ${readme}:${block.line} failed`);
  await page.close();
}

for (const readme of READMES) {
  const markdown = await readFile(path.join(ROOT, readme), 'utf8');
  const all = blocks(markdown);
  const runnable = all.filter((b) => b.lang === 'js' && b.marker === 'run');
  const typed = all.filter((b) => (b.lang === 'ts' || b.lang === 'tsx') && b.marker !== 'skip');

  for (const engine of Object.keys(ENGINES)) {
    test(`${readme}: the examples marked to run work in ${engine}`, async (t) => {
      assert.ok(runnable.length > 0, `${readme} has no <!-- test: run --> block`);
      await api('/admin/reset', { method: 'POST' });
      const browser = await openEngine(engine);
      try {
        for (const block of runnable) await runExample(t, browser, readme, block);
      } finally {
        await browser.close();
      }
    });
  }

  test(`${readme}: the TypeScript examples type-check`, { skip: typed.length === 0 && 'no ts/tsx blocks' }, async () => {
    // Inside www/node_modules, so `tidesync` and `react` resolve as in an app that installed them.
    const dir = path.join(WWW, 'node_modules', '.tidesync-readme', readme.replace(/\W+/g, '-'));
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    const names = new Set();
    for (const [i, block] of typed.entries()) {
      const name = block.file ?? `example-${i + 1}.${block.lang}`;
      assert.ok(!names.has(name), `${readme}: two blocks named ${name}`);
      names.add(name);
      await writeFile(path.join(dir, name), `// ${readme}:${block.line}\n${block.code}\nexport {};\n`);
    }
    const base = JSON.parse((await readFile(path.join(WWW, 'tsconfig.json'), 'utf8')).replace(/^\s*\/\/.*$/gm, ''));
    await writeFile(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: base.compilerOptions, include: ['*.ts', '*.tsx'] }));
    try {
      execFileSync(path.join(WWW, 'node_modules/.bin/tsc'), ['-p', dir, '--noEmit', '--strict'], { encoding: 'utf8', stdio: 'pipe' });
    } catch (err) {
      assert.fail(`tsc found errors in ${readme}'s examples:\n${err.stdout}${err.stderr}`);
    }
  });
}
