// Shared setup for the browser specs: headless Chromium through playwright-core (never a downloaded
// browser), a fresh profile per launch, and the page's console kept for failure reports.
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';

// The same flags as webdriver.json (the wasm-bindgen-test browser runs).
export const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export const RESULTS_DIR = fileURLToPath(new URL('../test-results/', import.meta.url));

/** The base URL of the reference server serving the demo (set by scripts/test). */
export function baseUrl() {
  const url = process.env.TIDESYNC_URL;
  if (!url) throw new Error('TIDESYNC_URL is not set: run the specs through scripts/test (make test)');
  return url.replace(/\/$/, '');
}

/**
 * Launches Chromium with a fresh user-data dir. Returns { context, page, logs, close }; `logs` collects the
 * page's console messages and uncaught errors.
 */
export async function launch() {
  const userDataDir = await mkdtemp(path.join(tmpdir(), 'tidesync-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
  const logs = [];
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (msg) => logs.push(`[console.${msg.type()}] ${msg.text()}`));
  page.on('pageerror', (err) => logs.push(`[pageerror] ${err.stack ?? err}`));
  return {
    context,
    page,
    logs,
    newPage: () => context.newPage(),
    async close() {
      await context.close();
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Debian's Firefox ESR (scripts/setup installs it); FIREFOX names another. */
export const FIREFOX = process.env.FIREFOX || '/usr/lib/firefox-esr/firefox-esr';

/**
 * Launches headless Firefox through puppeteer-core over WebDriver BiDi (Playwright cannot drive a stock
 * Firefox), with a fresh profile. Returns { newPage, close }; its pages have the same `goto`,
 * `evaluate`, `close` and `console` / `pageerror` events the specs use of Playwright's.
 */
export async function launchFirefox() {
  const browser = await puppeteer.launch({ browser: 'firefox', executablePath: FIREFOX, headless: true });
  return { newPage: () => browser.newPage(), close: () => browser.close() };
}

/** Saves a full-page screenshot to www/test-results/NAME.png. */
export async function screenshot(page, name) {
  await mkdir(RESULTS_DIR, { recursive: true });
  await page.screenshot({ path: path.join(RESULTS_DIR, `${name}.png`), fullPage: true });
}
