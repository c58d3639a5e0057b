// The UI origin's security, in a real browser against the real `jarvis up`:
// sign-in codes, cookies, headers, other local pages, framing, and model
// output that tries to run script or fetch remote images.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { freshHome, startJarvis, launchBrowser, signedInPage, httpServer } from "./harness.mjs";

let jarvis;
let browser;
let leak; // counts every request a rendered answer might make
const leaks = [];

before(async () => {
  jarvis = await startJarvis(freshHome("security"));
  browser = await launchBrowser();
  leak = await httpServer((req, res) => {
    leaks.push(req.url);
    res.writeHead(200, { "content-type": "image/png" });
    res.end();
  });
});

after(async () => {
  await browser?.close();
  await leak?.close();
  await jarvis?.stop();
});

test("a sign-in code works once and is traded for a strict HttpOnly cookie", async () => {
  const url = jarvis.openUrl();
  const first = await fetch(url, { redirect: "manual" });
  assert.equal(first.status, 303);
  assert.equal(first.headers.get("location"), "/");
  const cookie = first.headers.get("set-cookie");
  assert.match(cookie, /^jarvis_session_\d+=[0-9a-f]{64}; HttpOnly; SameSite=Strict; Path=\//);
  const replay = await fetch(url, { redirect: "manual" });
  assert.equal(replay.status, 403, "a replayed code gets no session");
  assert.equal(replay.headers.get("set-cookie"), null);
  const made = await fetch(`${jarvis.origin}/signin?code=${"0".repeat(64)}`, { redirect: "manual" });
  assert.equal(made.status, 403, "an invented code gets no session");
});

test("without a session the API answers 401 and the page asks to open Jarvis", async () => {
  const api = await fetch(`${jarvis.origin}/v1/conversations`);
  assert.equal(api.status, 401);
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(jarvis.origin);
  await page.waitForSelector("body[data-ready=true]");
  assert.match(await page.textContent("h1"), /Open Jarvis to sign in/);
  await context.close();
});

test("every response carries the security headers and no CORS", async () => {
  const response = await fetch(`${jarvis.origin}/`);
  const csp = response.headers.get("content-security-policy");
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  assert.equal(response.headers.get("referrer-policy"), "no-referrer");
  assert.equal(response.headers.get("x-frame-options"), "DENY");
  const preflight = await fetch(`${jarvis.origin}/v1/conversations`, {
    method: "OPTIONS",
    headers: { origin: "http://127.0.0.1:1", "access-control-request-method": "POST" },
  });
  assert.equal(preflight.headers.get("access-control-allow-origin"), null);
});

test("a foreign Host is refused (DNS rebinding)", async () => {
  const { request } = await import("node:http");
  const url = new URL(jarvis.origin);
  const status = await new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: url.port, path: "/", headers: { host: `evil.example:${url.port}` } }, (res) => resolve(res.statusCode));
    req.on("error", reject);
    req.end();
  });
  assert.equal(status, 403);
});

test("a page on another loopback port can neither read nor change anything", async () => {
  const page = await signedInPage(browser, jarvis);
  const before = await page.evaluate(async () => (await (await fetch("/v1/conversations")).json()).conversations.length);
  const target = jarvis.origin;
  const evil = await httpServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(`<!doctype html><body><form id=f method=POST action="${target}/v1/conversations" target=sink></form>
      <iframe name=sink></iframe><iframe id=frame src="${target}/"></iframe><script>
      window.results = {};
      (async () => {
        try { const r = await fetch("${target}/v1/conversations", { credentials: "include" }); results.read = r.status; results.body = await r.text(); }
        catch (e) { results.read = "blocked"; }
        try { const r = await fetch("${target}/v1/conversations", { method: "POST", credentials: "include", mode: "no-cors" }); results.post = r.type; }
        catch (e) { results.post = "blocked"; }
        try { const r = await fetch("${target}/launcher/models/smollm2-135m-instruct/download", { method: "POST", credentials: "include", mode: "no-cors" }); }
        catch (e) {}
        document.getElementById("f").submit();
        await new Promise((resolve) => {
          const ws = new WebSocket("${target.replace("http", "ws")}/v1/ws");
          ws.onopen = () => { results.ws = "open"; resolve(); };
          ws.onerror = () => { results.ws = "refused"; resolve(); };
        });
        results.done = true;
      })();
      </script>`);
  });
  const attacker = await page.context().newPage();
  await attacker.goto(evil.url);
  await attacker.waitForFunction(() => window.results && window.results.done, null, { timeout: 15_000 });
  await attacker.waitForTimeout(500);
  const results = await attacker.evaluate(() => window.results);
  assert.equal(results.read, "blocked", "no CORS: the read is blocked by the browser");
  assert.equal(results.ws, "refused", "the WebSocket upgrade needs our exact Origin");
  // The UI cannot be framed by another page.
  const framed = attacker.frames().find((f) => f.url().startsWith(target));
  const framedText = framed ? await framed.evaluate(() => document.body?.innerText || "").catch(() => "") : "";
  assert.doesNotMatch(framedText, /Jarvis/);
  const after = await page.evaluate(async () => (await (await fetch("/v1/conversations")).json()).conversations.length);
  assert.equal(after, before, "no conversation was created from the other page");
  const models = await page.evaluate(async () => (await (await fetch("/launcher/models")).json()).downloads.length);
  assert.equal(models, 0, "no download was started from the other page");
  await evil.close();
  await page.context().close();
});

test("model output cannot run script or load remote images", async () => {
  const page = await signedInPage(browser, jarvis);
  // An answer as a model could write it, stored through the core's API.
  const hostile = [
    "Here you go:",
    "<script>window.pwned = 1</script>",
    `<img src="${leak.url}/leak-raw-html">`,
    `![chart](${leak.url}/leak-markdown-image)`,
    "[click me](javascript:window.pwned=2)",
    `<a href="javascript:window.pwned=3">raw link</a>`,
    `<svg onload="window.pwned=4"></svg><iframe src="${leak.url}/leak-frame"></iframe>`,
    "```js\nconsole.log('<b>not bold</b>')\n```",
  ].join("\n\n");
  const id = await page.evaluate(async (content) => {
    const created = await (await fetch("/v1/conversations", { method: "POST" })).json();
    await fetch(`/v1/conversations/${created.id}/messages`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ role: "user", content: "show me" }) });
    await fetch(`/v1/conversations/${created.id}/messages`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ role: "assistant", content }) });
    return created.id;
  }, hostile);
  await page.reload();
  await page.waitForSelector("body[data-ready=true]");
  await page.click(`.conversation-item[data-id="${id}"] .open`);
  await page.waitForSelector(".message.assistant .body pre");
  for (const link of await page.$$(".message.assistant a")) {
    const href = await link.getAttribute("href");
    assert.ok(!href || /^https?:|^mailto:/.test(href), `unsafe link survived: ${href}`);
    await link.click({ force: true }).catch(() => {});
  }
  await page.waitForTimeout(500);
  assert.equal(await page.evaluate(() => window.pwned), undefined, "no script ran");
  assert.equal(await page.$$eval(".message .body img, .message .body iframe, .message .body svg", (els) => els.length), 0);
  assert.ok(await page.$(".blocked-image"), "a remote image is shown as a placeholder");
  assert.match(await page.textContent(".message.assistant pre code"), /<b>not bold<\/b>/);
  assert.deepEqual(leaks, [], "no request reached the leak server");
  assert.deepEqual(page.jarvisErrors, []);
  await page.context().close();
});
