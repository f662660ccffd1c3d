// Shared setup for the browser specs: headless Chromium through playwright-core (never a downloaded
// browser), a fresh profile per launch, and the page's console kept for failure reports.
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { after, test } from 'node:test';
import puppeteer from 'puppeteer-core';
import { Builder, By } from 'selenium-webdriver';

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
 * Starts the WebDriver server `command` (WebKitWebDriver, WPEWebDriver) on a free port, with `env`.
 * Returns { url, stop }: one driver serves one session at a time, and sessions one after the other.
 */
async function startDriver(command, env) {
  const port = await freePort();
  const driverProcess = spawn(command, [`--port=${port}`], { env, stdio: 'ignore' });
  return { url: `http://127.0.0.1:${port}`, stop: () => driverProcess.kill() };
}

/** Starts Xvfb (MiniBrowser has no headless mode) and WebKitWebDriver on it. Returns { url, stop }. */
async function startWebKitDriver() {
  const xvfb = spawn('Xvfb', ['-displayfd', '1', '-screen', '0', '1280x800x24', '-nolisten', 'tcp'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const display = await new Promise((ok, no) => {
    xvfb.stdout.once('data', (d) => ok(String(d).trim()));
    xvfb.once('exit', (code) => no(new Error(`Xvfb exited (${code})`)));
  });
  const driver = await startDriver('WebKitWebDriver', { ...process.env, DISPLAY: `:${display}` });
  return {
    url: driver.url,
    stop() {
      driver.stop();
      xvfb.kill();
    },
  };
}

/** MiniBrowser (WebKitGTK) with a fresh, ephemeral profile (--automation). */
const MINIBROWSER_CAPABILITIES = {
  browserName: 'MiniBrowser',
  'webkitgtk:browserOptions': { binary: MINIBROWSER, args: ['--automation'] },
};

/**
 * A WebDriver session with `capabilities` over the driver at `url`. Returns { driver, newPage, close }
 * (close ends the session, not the driver); each page is a window of the session, with a
 * Playwright-like page API.
 */
async function webDriverSession(url, capabilities) {
  let driver;
  for (let i = 0; ; i++) {
    try {
      driver = await new Builder().usingServer(url).withCapabilities(capabilities).build();
      break;
    } catch (err) {
      if (i >= 50) throw err; // the driver takes a moment to listen
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await driver.manage().setTimeouts({ script: 60_000 });
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
    const listeners = { console: [], pageerror: [], dialog: [] };
    let url = 'about:blank';
    // With a `dialog` listener, the page's alert / confirm / prompt are answered in the page (classic
    // WebDriver reports a dialog only by failing the next command): confirm() says yes, as
    // Playwright's dialog.accept() does.
    const acceptDialogs = () =>
      listeners.dialog.length === 0
        ? undefined
        : driver.executeScript('window.alert = () => {}; window.confirm = () => true; window.prompt = (m, d) => d ?? "";');
    const page = {
      on: (event, fn) => listeners[event]?.push(fn),
      url: () => url,
      goto: (to) => serial(handle, async () => {
        await driver.get((url = to));
        await acceptDialogs();
      }),
      reload: () => serial(handle, async () => {
        await driver.navigate().refresh();
        await acceptDialogs();
      }),
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
      // WebDriver's own element click and typing (real input events), found by a CSS selector.
      clickElement: (selector) => serial(handle, async () => (await driver.findElement(By.css(selector))).click()),
      fillElement: (selector, value) => serial(handle, async () => {
        const el = await driver.findElement(By.css(selector));
        await el.clear();
        if (value !== '') await el.sendKeys(value);
      }),
      setViewportSize: ({ width, height }) => serial(handle, () => driver.manage().window().setRect({ width, height })),
      async screenshot({ path: file } = {}) {
        const png = Buffer.from(await serial(handle, () => driver.takeScreenshot()), 'base64');
        if (file) await writeFile(file, png);
        return png;
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
  return { driver, newPage, close: () => driver.quit().catch(() => {}) };
}

/**
 * Launches WebKitGTK (Safari's engine) through WebKitWebDriver and selenium-webdriver, on a display of
 * its own (Xvfb: MiniBrowser has no headless mode). Returns { newPage, close }; each
 * page is a window of the one session, with Playwright's `goto`, `evaluate`, `reload`, `close`, `url`
 * and `console` / `pageerror` events (replayed from what the page collected: see WEBKIT_START).
 */
export async function launchWebKit() {
  return launchOver(await startWebKitDriver(), MINIBROWSER_CAPABILITIES);
}

/** A session with `capabilities` over the driver `server`: { newPage, close } (close ends both). */
async function launchOver(server, capabilities) {
  let session;
  try {
    session = await webDriverSession(server.url, capabilities);
  } catch (err) {
    server.stop();
    throw err;
  }
  return {
    newPage: session.newPage,
    async close() {
      await session.close();
      server.stop();
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
  return launchOver(await startDriver('WPEWebDriver', { ...process.env, ...env }), {
    browserName: 'cog',
    'wpe:browserOptions': { binary: COG, args: ['--automation', '--platform=headless'] },
  });
}

/** Every engine the cross-engine specs run in, by name: its launcher (each returns { newPage, close }). */
export const ENGINES = { Chromium: launch, Firefox: launchFirefox, WebKit: launchWebKit };

// ---- one browser per spec file and engine, a fresh context per test ----
//
// Launching a browser per test costs 2–4 s in Firefox; a spec file (one node process) instead starts
// each engine once, on first use, and gives every test a fresh context of it: a Playwright
// BrowserContext in Chromium, a WebDriver BiDi user context in Firefox (puppeteer's
// createBrowserContext), a new WebDriver session in WebKitGTK (MiniBrowser --automation: an
// ephemeral profile) over the one WebKitWebDriver and Xvfb. Each is its own cookie jar, IndexedDB,
// caches and service workers. `engineTest` closes the browsers after the file's last test.

/** What an engine (or its driver) lacks, by need, as the reason a test that needs it is skipped. */
export const LACKS = {
  Chromium: {},
  Firefox: {
    cdp: 'needs the Chrome DevTools Protocol: Chromium only',
  },
  WebKit: {
    cdp: 'needs the Chrome DevTools Protocol: Chromium only',
    offline: 'classic WebDriver cannot take WebKitGTK offline (no network emulation)',
  },
};

const running = new Map(); // engine -> Promise<{ context(), close() }>

const STARTERS = {
  async Chromium() {
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_ARGS,
    });
    return {
      async context() {
        const context = await browser.newContext();
        return {
          context,
          newPage: () => context.newPage(),
          setOffline: (offline) => context.setOffline(offline),
          close: () => context.close(),
        };
      },
      close: () => browser.close(),
    };
  },
  async Firefox() {
    const browser = await puppeteer.launch({ browser: 'firefox', executablePath: FIREFOX, headless: true });
    return {
      async context() {
        const context = await browser.createBrowserContext();
        return {
          // A window each, as Playwright's pages are: none is a throttled background tab.
          newPage: () => context.newPage({ type: 'window' }),
          async setOffline(offline) {
            for (const page of await context.pages()) await page.setOfflineMode(offline);
          },
          close: () => context.close(),
        };
      },
      close: () => browser.close(),
    };
  },
  async WebKit() {
    const server = await startWebKitDriver();
    return {
      async context() {
        const session = await webDriverSession(server.url, MINIBROWSER_CAPABILITIES);
        return {
          newPage: session.newPage,
          setOffline() {
            throw new Error(LACKS.WebKit.offline);
          },
          close: session.close,
        };
      },
      async close() {
        server.stop();
      },
    };
  },
};

/** The engine's browser of this process, started on first use. */
function browserOf(engine) {
  if (!STARTERS[engine]) throw new Error(`unknown engine ${engine}: one of ${Object.keys(STARTERS).join(', ')}`);
  if (!running.has(engine)) {
    const started = STARTERS[engine]();
    started.catch(() => running.delete(engine));
    running.set(engine, started);
  }
  return running.get(engine);
}

/** Closes every browser this process started through openEngine(). */
export async function closeEngines() {
  const all = [...running.values()];
  running.clear();
  await Promise.all(all.map(async (b) => (await b.catch(() => null))?.close().catch(() => {})));
}

/**
 * A fresh context of `engine` ('Chromium', 'Firefox' or 'WebKit') in this process's browser of it.
 * Returns what launch() does: { engine, page, logs, newPage, setOffline, close, context (Chromium:
 * Playwright's BrowserContext, else an object with newPage) }. Every page has the Playwright page
 * API the specs use (pageApi() below); `logs` collects its pages' console and errors.
 */
export async function openEngine(engine) {
  const ctx = await (await browserOf(engine)).context();
  const logs = [];
  let pages = 0;
  const newPage = async () => {
    const page = engine === 'Chromium' ? await ctx.newPage() : pageApi(await ctx.newPage(), engine);
    const tab = pages++ === 0 ? '' : ` tab ${pages}`;
    page.on('console', (msg) => logs.push(`[${engine}${tab} console.${msg.type()}] ${msg.text()}`));
    page.on('pageerror', (err) => logs.push(`[${engine}${tab} pageerror] ${err.stack ?? err}`));
    return page;
  };
  let page;
  try {
    page = await newPage();
  } catch (err) {
    await ctx.close().catch(() => {});
    throw err;
  }
  return {
    engine,
    context: ctx.context ?? { newPage },
    page,
    logs,
    newPage,
    setOffline: ctx.setOffline,
    close: () => ctx.close().catch(() => {}),
  };
}

let closesRegistered = false;

/**
 * Declares the test `name` once per engine, as `name (Engine)`: `fn(t, engine)`. Skipped, with the
 * reason printed, in an engine that lacks one of `needs` (keys of LACKS[engine]) or, for a reason
 * of the test's own, where `skip[engine]` says why. `todo[engine]` names a known bug of tidesync in
 * that engine: the test still runs there and prints its result with the reason, but its failure
 * does not fail the run (node:test's todo). Closes the spec's browsers after its last test.
 */
export function engineTest(name, { needs = [], skip = {}, todo = {}, timeout } = {}, fn) {
  if (!closesRegistered) {
    closesRegistered = true;
    after(closeEngines);
  }
  for (const engine of Object.keys(STARTERS)) {
    const reason = skip[engine] ?? needs.map((n) => LACKS[engine][n]).find(Boolean);
    test(`${name} (${engine})`, { skip: reason ?? false, todo: (!reason && todo[engine]) || false, timeout }, (t) => fn(t, engine));
  }
}

// ---- Playwright's page API over puppeteer-core (Firefox) and the WebKit pages ----

const settle = (ms) => new Promise((r) => setTimeout(r, ms));

/** A function whose source is `source` (both drivers send a function's toString() to the page). */
function pageFunction(source) {
  const f = () => {};
  f.toString = () => source;
  return f;
}

// In the page: the elements matching `selector` whose text contains `hasText` (null: any; classic
// WebDriver sends an undefined argument as null).
const PICK = `(sel, hasText) => [...document.querySelectorAll(sel)].filter((e) => hasText == null || e.textContent.includes(hasText))`;
// In the page: whether an element is visible as Playwright means it (a non-empty box, not visibility: hidden).
const VISIBLE = `(e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== 'hidden'; }`;

let picks = 0;

/**
 * Adds to a Firefox (puppeteer) or WebKit page the Playwright methods the specs use, with
 * Playwright's argument order and waiting: waitForFunction, waitForSelector, textContent,
 * getAttribute, inputValue, isDisabled, $, $$eval, click, fill, locator (waitFor, textContent,
 * getAttribute, click, count, first), setViewportSize, screenshot. Clicks and typing go through the
 * driver's input (WebDriver BiDi / classic actions), not synthetic DOM events.
 */
function pageApi(page, engine) {
  const run = (source, arg) => page.evaluate(pageFunction(source), arg);
  const waitFor = async (what, check, timeout = 30_000) => {
    const deadline = Date.now() + timeout;
    for (;;) {
      const v = await check();
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`${engine}: timed out after ${timeout} ms waiting for ${what}`);
      await settle(50);
    }
  };
  const state = (selector, hasText, index) =>
    run(`([sel, hasText, index]) => { const all = (${PICK})(sel, hasText); const e = all[index ?? 0];
      return { count: all.length, found: !!e, visible: !!e && (${VISIBLE})(e) }; }`, [selector, hasText, index]);
  const waitForSelector = async (selector, { timeout, state: want = 'visible' } = {}, hasText, index) => {
    await waitFor(`${selector} (${want})`, async () => {
      const s = await state(selector, hasText, index);
      return want === 'attached' ? s.found : want === 'detached' ? !s.found : want === 'hidden' ? !s.visible : s.visible;
    }, timeout);
    return want === 'detached' || want === 'hidden' ? null : { selector };
  };
  const read = async (selector, body, hasText, index) => {
    await waitForSelector(selector, { state: 'attached' }, hasText, index);
    return run(`([sel, hasText, index]) => { const e = (${PICK})(sel, hasText)[index ?? 0]; return (${body})(e); }`, [selector, hasText, index]);
  };
  // Marks the element with an attribute of its own, so the driver can find it by a plain selector.
  const mark = async (selector, hasText, index) => {
    await waitForSelector(selector, {}, hasText, index);
    const id = `p${++picks}`;
    await run(`([sel, hasText, index, id]) => { const e = (${PICK})(sel, hasText)[index ?? 0]; e.setAttribute('data-tidesync-pick', id); e.scrollIntoView({ block: 'center' }); }`, [selector, hasText, index, id]);
    return `[data-tidesync-pick="${id}"]`;
  };
  const click = async (selector, hasText, index) => {
    const target = await mark(selector, hasText, index);
    if (page.clickElement) await page.clickElement(target);
    else await page.click(target);
  };
  const fill = async (selector, value) => {
    const target = await mark(selector);
    if (page.fillElement) await page.fillElement(target, value);
    else await page.locator(target).fill(value);
  };
  const locator = (selector, { hasText } = {}, index) => ({
    waitFor: (opts) => waitForSelector(selector, opts, hasText, index),
    textContent: () => read(selector, '(e) => e.textContent', hasText, index),
    getAttribute: (name) => read(selector, `(e) => e.getAttribute(${JSON.stringify(name)})`, hasText, index),
    click: () => click(selector, hasText, index),
    count: async () => (await state(selector, hasText)).count,
    first: () => locator(selector, { hasText }, 0),
    nth: (i) => locator(selector, { hasText }, i),
  });
  const api = {
    // Resolves to true, not to a handle of the value (no spec reads it; an object such as an engine
    // would not survive the drivers' serialization).
    async waitForFunction(fn, arg, { timeout } = {}) {
      const truthy = `(arg) => Promise.resolve((${fn})(arg)).then((v) => !!v)`;
      return waitFor(`function ${String(fn).slice(0, 80)}`, () => run(truthy, arg), timeout);
    },
    waitForSelector,
    textContent: (selector) => read(selector, '(e) => e.textContent'),
    getAttribute: (selector, name) => read(selector, `(e) => e.getAttribute(${JSON.stringify(name)})`),
    inputValue: (selector) => read(selector, '(e) => e.value'),
    isDisabled: (selector) => read(selector, '(e) => e.disabled === true'),
    async $(selector) {
      return (await state(selector)).found ? { selector } : null;
    },
    $$eval: (selector, fn, arg) =>
      run(`([sel, arg]) => (${fn})([...document.querySelectorAll(sel)], arg)`, [selector, arg]),
    click: (selector) => click(selector),
    fill,
    locator,
  };
  if (engine === 'Firefox') {
    api.setViewportSize = ({ width, height }) => page.setViewport({ width, height });
    // puppeteer's dialog event: the same accept() as Playwright's.
  }
  return new Proxy(page, {
    get(target, prop) {
      if (Object.hasOwn(api, prop)) return api[prop];
      const v = Reflect.get(target, prop);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

/** Saves a full-page screenshot to www/test-results/NAME.png. */
export async function screenshot(page, name) {
  await mkdir(RESULTS_DIR, { recursive: true });
  await page.screenshot({ path: path.join(RESULTS_DIR, `${name}.png`), fullPage: true });
}
