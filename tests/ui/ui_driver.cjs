// Drives the real ComfyUI web UI in headless Chromium for the Python tests (tests/ui/browser.py).
//
//   NODE_PATH=tests/ui/node_modules node tests/ui/ui_driver.cjs BASE_URL
//
// Protocol: one JSON request per stdin line, one JSON answer per stdout line, in order.
//   {"op": "eval", "body": "<async function body>", "arg": <json>}  -> {"ok": true, "value": <json>}
//   {"op": "screenshot", "path": "<file.png>", "clip"?: {x, y, width, height}} -> {"ok": true}
//   {"op": "reload"}                                                 -> {"ok": true}  (waits until the app is ready)
//   {"op": "viewport", "width": W, "height": H}                      -> {"ok": true}  (the window's inner size)
//   {"op": "logs"}   -> {"ok": true, "value": {"console": [...], "blocked": [...]}}  (since the last "logs")
// Every failure answers {"ok": false, "error": "..."}. The page never leaves loopback: any other request
// is aborted and reported under "blocked".
const { chromium } = require("playwright-core");
const readline = require("readline");

const baseUrl = process.argv[2];
const READY_TIMEOUT_MS = 90000;
const LOOPBACK = /^(127\.0\.0\.1|localhost|\[::1\])$/;

async function waitForApp(page) {
  await page.goto(baseUrl + "/", { waitUntil: "domcontentloaded" });
  await page.waitForFunction(() => window.app?.graph && window.LiteGraph
    && Object.keys(window.LiteGraph.registered_node_types).length > 100, null, { timeout: READY_TIMEOUT_MS });
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"],
  });
  const page = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
  let consoleLines = [];
  let blocked = [];
  await page.route((url) => !LOOPBACK.test(url.hostname), (route) => {
    blocked.push(route.request().url());
    return route.abort();
  });
  page.on("console", (message) => consoleLines.push(`[${message.type()}] ${message.text()}`));
  page.on("pageerror", (error) => consoleLines.push(`[pageerror] ${error.message}`));
  await waitForApp(page);

  const handlers = {
    eval: async ({ body, arg }) => page.evaluate(
      // eslint-disable-next-line no-new-func
      ({ source, value }) => new Function("arg", `return (async () => { ${source} })();`)(value),
      { source: body, value: arg ?? null }),
    screenshot: async ({ path, clip }) => { await page.screenshot({ path, ...(clip ? { clip } : {}) }); return null; },
    reload: async () => { await waitForApp(page); return null; },
    viewport: async ({ width, height }) => { await page.setViewportSize({ width, height }); return null; },
    logs: async () => {
      const value = { console: consoleLines, blocked };
      consoleLines = [];
      blocked = [];
      return value;
    },
  };

  const send = (answer) => process.stdout.write(JSON.stringify(answer) + "\n");
  send({ ok: true, value: "ready" });
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    try {
      const request = JSON.parse(line);
      const handler = handlers[request.op];
      if (!handler) throw new Error(`unknown op '${request.op}'`);
      send({ ok: true, value: (await handler(request)) ?? null });
    } catch (error) {
      send({ ok: false, error: String(error?.stack || error) });
    }
  }
  await browser.close();
}

main().catch((error) => {
  process.stdout.write(JSON.stringify({ ok: false, error: String(error?.stack || error) }) + "\n");
  process.exit(1);
});
