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
export async function launch(extraArgs = []) {
  const userDataDir = await mkdtemp(path.join(tmpdir(), 'tidesync-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [...CHROMIUM_ARGS, ...extraArgs],
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
    setOffline: (offline) => context.setOffline(offline),
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
 * Firefox), with a fresh profile. Returns { newPage, setOffline, close }; its pages have the same
 * `goto`, `evaluate`, `reload`, `close`, `url` and `console` / `pageerror` events the specs use of
 * Playwright's. Each page is a window of its own, as Playwright's are: none is a hidden background tab.
 */
export async function launchFirefox() {
  const browser = await puppeteer.launch({ browser: 'firefox', executablePath: FIREFOX, headless: true });
  return {
    newPage: () => browser.newPage({ type: 'window' }),
    /** Takes every open page offline or back online (WebDriver BiDi's network emulation). */
    async setOffline(offline) {
      for (const page of await browser.pages()) await page.setOfflineMode(offline);
    },
    close: () => browser.close(),
  };
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

// The WebKit pages' evaluate(), in two steps so that several windows can run code at once over one
// WebDriver session (it answers one command at a time): START runs the function in the page as a job,
// POLL reads the job's state. The page's `console.error`, `error` and `unhandledrejection` are
// collected beside the jobs (classic WebDriver has no console events) and handed over by POLL.
const WEBKIT_START = `const [source, arg, id] = arguments;
  let d = window.__tidesyncDriver;
  if (!d) {
    d = window.__tidesyncDriver = { jobs: {}, seen: [] };
    const error = console.error;
    console.error = (...a) => { d.seen.push(['error', a.map(String).join(' ')]); error.apply(console, a); };
    addEventListener('error', (e) => d.seen.push(['pageerror', String(e.error?.stack ?? e.message)]));
    addEventListener('unhandledrejection', (e) => d.seen.push(['pageerror', String(e.reason?.stack ?? e.reason)]));
  }
  const job = (d.jobs[id] = { state: 'running' });
  Promise.resolve()
    .then(() => (0, eval)('(' + source + ')')(arg))
    .then((value) => Object.assign(job, { state: 'done', ok: true, value, undef: value === undefined }),
          (e) => Object.assign(job, { state: 'done', ok: false, error: String(e?.message ?? e) }));`;
const WEBKIT_POLL = `const d = window.__tidesyncDriver;
  const job = d?.jobs[arguments[0]];
  if (!job) return { state: 'gone' };
  if (job.state === 'done') delete d.jobs[arguments[0]];
  return { ...job, seen: d.seen.splice(0) };`;

/**
 * Launches WebKitGTK (Safari's engine) through WebKitWebDriver and selenium-webdriver, on a display of
 * its own (Xvfb: MiniBrowser has no headless mode). Returns { newPage, close }; each
 * page is a window of the one session, with Playwright's `goto`, `evaluate`, `reload`, `close`, `url`
 * and `console` / `pageerror` events (replayed from what the page collected: see WEBKIT_START).
 */
export async function launchWebKit() {
  const xvfb = spawn('Xvfb', ['-displayfd', '1', '-screen', '0', '1280x800x24', '-nolisten', 'tcp'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const display = await new Promise((ok, no) => {
    xvfb.stdout.once('data', (d) => ok(String(d).trim()));
    xvfb.once('exit', (code) => no(new Error(`Xvfb exited (${code})`)));
  });
  let driver;
  try {
    driver = await startWebDriver('WebKitWebDriver', { ...process.env, DISPLAY: `:${display}` }, {
      browserName: 'MiniBrowser',
      'webkitgtk:browserOptions': { binary: MINIBROWSER, args: ['--automation'] },
    });
  } catch (err) {
    xvfb.kill();
    throw err;
  }
  return webDriverPages(driver.session, () => {
    driver.stop();
    xvfb.kill();
  });
}

/**
 * Starts the WebDriver server `command` (WebKitWebDriver, WPEWebDriver) on a free port and opens a
 * session with `capabilities`. Returns { session, stop } (stop ends the driver process).
 */
async function startWebDriver(command, env, capabilities) {
  const port = await freePort();
  const driverProcess = spawn(command, [`--port=${port}`], { env, stdio: 'ignore' });
  const stop = () => driverProcess.kill();
  let driver;
  try {
    for (let i = 0; ; i++) {
      try {
        driver = await new Builder().usingServer(`http://127.0.0.1:${port}`).withCapabilities(capabilities).build();
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
  return { session: driver, stop };
}

/** Playwright-like pages over one classic WebDriver session (see launchWebKit). */
async function webDriverPages(driver, stop) {
  // One command at a time, each in its page's window.
  let queue = Promise.resolve();
  let current = await driver.getWindowHandle();
  let unused = current; // a window no page uses: the session's own serves the first page
  const open = new Set([current]);
  const serial = (handle, fn) => {
    const run = queue.then(async () => {
      if (handle !== current) {
        await driver.switchTo().window(handle);
        current = handle;
      }
      return fn();
    });
    queue = run.catch(() => {});
    return run;
  };
  let jobs = 0;
  const newPage = async () => {
    let handle = unused;
    unused = undefined;
    handle ??= await serial([...open][0], async () => {
      await driver.switchTo().newWindow('window');
      current = await driver.getWindowHandle();
      open.add(current);
      return current;
    });
    const listeners = { console: [], pageerror: [] };
    let url = 'about:blank';
    const page = {
      on: (event, fn) => listeners[event]?.push(fn),
      url: () => url,
      goto: (to) => serial(handle, () => driver.get((url = to))),
      reload: () => serial(handle, () => driver.navigate().refresh()),
      async evaluate(fn, arg) {
        const id = ++jobs;
        await serial(handle, () => driver.executeScript(WEBKIT_START, fn.toString(), arg, id));
        for (;;) {
          const r = await serial(handle, () => driver.executeScript(WEBKIT_POLL, id));
          for (const [type, text] of r.seen ?? []) {
            if (type === 'pageerror') listeners.pageerror.forEach((f) => f(new Error(text)));
            else listeners.console.forEach((f) => f({ type: () => type, text: () => text }));
          }
          if (r.state === 'gone') throw new Error('the page navigated away before the evaluation settled');
          if (r.state === 'done') {
            if (!r.ok) throw new Error(r.error);
            return r.undef ? undefined : r.value;
          }
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      },
      // The session ends with its last window: that one is blanked and kept for the next page.
      close: () => serial(handle, async () => {
        if (open.size > 1) {
          open.delete(handle);
          await driver.close();
        } else {
          await driver.get('about:blank');
          unused = handle;
        }
      }),
    };
    return page;
  };
  return {
    newPage,
    async close() {
      await driver.quit().catch(() => {});
      stop();
    },
  };
}

/** WPE WebKit's browser (Debian's `cog`, WPE 2.38: the Safari 16.0 era) and its WebDriver. */
export const COG = process.env.COG || '/usr/bin/cog';

/**
 * Launches WPE WebKit 2.38 (Debian's cog + wpewebkit-driver), truly headless (`--platform=headless`:
 * no display needed), through WPEWebDriver and selenium-webdriver. The same page API as
 * launchWebKit's. It has no import maps: its pages import the package by path. `env` is added to the
 * driver's environment, which the browser and its web process inherit (e.g. JavaScriptCore's `JSC_*`
 * options).
 */
export async function launchWPE({ env = {} } = {}) {
  const driver = await startWebDriver('WPEWebDriver', { ...process.env, ...env }, {
    browserName: 'cog',
    'wpe:browserOptions': { binary: COG, args: ['--automation', '--platform=headless'] },
  });
  return webDriverPages(driver.session, driver.stop);
}

/** Every engine the cross-engine specs run in, by name: its launcher (each returns { newPage, close }). */
export const ENGINES = { Chromium: launch, Firefox: launchFirefox, WebKit: launchWebKit };

/** Saves a full-page screenshot to www/test-results/NAME.png. */
export async function screenshot(page, name) {
  await mkdir(RESULTS_DIR, { recursive: true });
  await page.screenshot({ path: path.join(RESULTS_DIR, `${name}.png`), fullPage: true });
}
