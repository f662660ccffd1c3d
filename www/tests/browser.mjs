// Shared setup for the browser specs: headless Chromium through playwright-core (never a downloaded
// browser), a fresh profile per launch, and the page's console kept for failure reports.
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import puppeteer from 'puppeteer-core';
import { Builder } from 'selenium-webdriver';

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

/** WebKitGTK's MiniBrowser and its WebDriver (Debian's webkit2gtk-driver; scripts/setup installs them). */
export const MINIBROWSER = process.env.MINIBROWSER || '/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser';

const freePort = () =>
  new Promise((ok, no) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
    s.on('error', no);
  });

/**
 * Launches WebKitGTK (Safari's engine) through WebKitWebDriver and selenium-webdriver, on a display of
 * its own (Xvfb: MiniBrowser has no headless mode). Classic WebDriver has no console or error events,
 * so `evaluate` collects `console.error`, `error` and `unhandledrejection` in the page and replays
 * them to the `console` / `pageerror` listeners. Returns { newPage, close }; one window serves every
 * page, one after the other.
 */
export async function launchWebKit() {
  const xvfb = spawn('Xvfb', ['-displayfd', '1', '-screen', '0', '1280x800x24', '-nolisten', 'tcp'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const display = await new Promise((ok, no) => {
    xvfb.stdout.once('data', (d) => ok(String(d).trim()));
    xvfb.once('exit', (code) => no(new Error(`Xvfb exited (${code})`)));
  });
  const port = await freePort();
  const driverProcess = spawn('WebKitWebDriver', [`--port=${port}`], {
    env: { ...process.env, DISPLAY: `:${display}` },
    stdio: 'ignore',
  });
  const stop = () => {
    driverProcess.kill();
    xvfb.kill();
  };
  let driver;
  try {
    for (let i = 0; ; i++) {
      try {
        driver = await new Builder()
          .usingServer(`http://127.0.0.1:${port}`)
          .withCapabilities({
            browserName: 'MiniBrowser',
            'webkitgtk:browserOptions': { binary: MINIBROWSER, args: ['--automation'] },
          })
          .build();
        break;
      } catch (err) {
        if (i >= 50) throw err; // the driver takes a moment to listen
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await driver.manage().setTimeouts({ script: 60_000 });
  } catch (err) {
    stop();
    throw err;
  }
  const newPage = () => {
    const listeners = { console: [], pageerror: [] };
    return {
      on: (event, fn) => listeners[event]?.push(fn),
      goto: (url) => driver.get(url),
      async evaluate(fn, arg) {
        const r = await driver.executeAsyncScript(
          `const done = arguments[arguments.length - 1];
           const seen = [];
           const error = console.error;
           console.error = (...a) => { seen.push(['error', a.map(String).join(' ')]); error.apply(console, a); };
           addEventListener('error', (e) => seen.push(['pageerror', String(e.error?.stack ?? e.message)]));
           addEventListener('unhandledrejection', (e) => seen.push(['pageerror', String(e.reason?.stack ?? e.reason)]));
           Promise.resolve()
             .then(() => (0, eval)('(' + arguments[0] + ')')(arguments[1]))
             .then((value) => done({ ok: true, value, seen }), (e) => done({ ok: false, error: String(e?.message ?? e), seen }));`,
          fn.toString(),
          arg,
        );
        for (const [type, text] of r.seen) {
          if (type === 'pageerror') listeners.pageerror.forEach((f) => f(new Error(text)));
          else listeners.console.forEach((f) => f({ type: () => type, text: () => text }));
        }
        if (!r.ok) throw new Error(r.error);
        return r.value;
      },
      close: async () => {},
    };
  };
  return {
    newPage: async () => newPage(),
    async close() {
      await driver.quit().catch(() => {});
      stop();
    },
  };
}

/** Saves a full-page screenshot to www/test-results/NAME.png. */
export async function screenshot(page, name) {
  await mkdir(RESULTS_DIR, { recursive: true });
  await page.screenshot({ path: path.join(RESULTS_DIR, `${name}.png`), fullPage: true });
}
