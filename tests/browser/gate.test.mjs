// The gatekeeper in a real browser: a slash command in the chat leads to
// a pending approval; the chat's "Review request" button has the launcher
// open the approval page (its own origin) in the browser; approving there
// runs the tool and the result appears in the chat. Model output carrying
// script cannot approve, the chat origin cannot read or decide approvals
// even with script running in it, another loopback page cannot either,
// and the approval page cannot be framed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { JARVIS, freshHome, startJarvis, launchBrowser, signedInPage, screenshot, httpServer, axeViolations } from "./harness.mjs";

let jarvis;
let browser;
let home;
let opened; // what the launcher asked the OS to open (a file the stand-in writes)

before(async () => {
  home = freshHome("gate");
  opened = join(home, "opened.txt");
  const opener = join(home, "open.sh");
  writeFileSync(opener, `#!/bin/sh\nprintf '%s\\n' "$1" >> '${opened}'\n`);
  chmodSync(opener, 0o755);
  jarvis = await startJarvis(home, { JARVIS_OPEN_COMMAND: opener, JARVIS_NOTIFY_COMMAND: "/bin/true" });
  jarvis.approvals = JSON.parse(readFileSync(join(home, "run/instance.json"), "utf8")).approvals_url;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await jarvis?.stop();
});

// The approval page's sign-in URL the launcher handed to the "OS".
async function openedUrl() {
  for (let i = 0; i < 100; i++) {
    if (existsSync(opened)) {
      const lines = readFileSync(opened, "utf8").trim().split("\n");
      rmSync(opened);
      return lines[lines.length - 1];
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("the launcher opened nothing");
}

function pendingIds() {
  const result = spawnSync(JARVIS, ["approvals", "list", "--json"], { env: { ...process.env, JARVIS_HOME: home }, encoding: "utf8" });
  assert.equal(result.status, 0, result.stderr);
  return JSON.parse(result.stdout).pending.map((p) => p.id);
}

// The id of a request that waits and is not in `before`.
async function waitForNewPending(before) {
  for (let i = 0; i < 100; i++) {
    const id = pendingIds().find((p) => !before.includes(p));
    if (id) return id;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("no new request waits");
}

test("a slash command waits for approval on the approval page, then its result is in the chat", async () => {
  const chat = await signedInPage(browser, jarvis);
  await chat.fill("#composer", "/note Buy oat milk\nand <b>bread</b>");
  await chat.press("#composer", "Enter");
  await chat.waitForSelector(".action-wait:has-text('Waiting for your approval')");
  await chat.waitForSelector("#approvals-banner", { timeout: 10_000 });
  await screenshot(chat, "gate-chat-waiting-light");

  // The chat page asks the launcher to open the approval page; the
  // sign-in link goes to the OS, never to the chat page.
  const reply = await chat.evaluate(async () => (await fetch("/launcher/approvals/open", { method: "POST" })).json());
  assert.deepEqual(reply, { opened: true });
  await openedUrl(); // that link is unused: the button below makes another
  await chat.click("#review-approval");
  const signin = await openedUrl();
  assert.ok(signin.startsWith(`${jarvis.approvals}/signin?code=`), signin);

  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(signin);
  await page.waitForSelector("body[data-ready=true]");
  const card = page.locator("article.approval[data-tool=write_note]");
  await card.waitFor();
  // The complete arguments, as text: the markup is shown, not rendered.
  const shown = await card.locator("pre.arguments").textContent();
  assert.match(shown, /"title": "Buy oat milk"/);
  assert.match(shown, /and <b>bread<\/b>/);
  assert.equal(await card.locator("pre.arguments b").count(), 0);
  assert.match(await card.textContent(), /You typed a command in the chat/);
  assert.equal(await card.locator("button[data-choice=always]").count(), 1, "notes may be always allowed");
  assert.deepEqual(await axeViolations(page), []);
  await screenshot(page, "gate-approval-page-light");
  await page.waitForTimeout(900); // the buttons wake up after a moment
  await card.locator("button[data-choice=once]").click();
  await page.waitForSelector("#nothing-pending");

  // The chat shows the outcome as Jarvis' answer, stored in the conversation.
  await chat.waitForFunction(() => !window.jarvis.chat.turn, null, { timeout: 30_000 });
  const answer = await chat.textContent(".message.assistant:last-of-type .body");
  assert.match(answer, /Saved the note Buy oat milk as .*notes\/buy-oat-milk\.md/);
  assert.equal(await chat.$(".action-wait"), null);
  await screenshot(chat, "gate-chat-done-light");
  assert.deepEqual(errors, []);
  assert.deepEqual(chat.jarvisErrors, []);
  await context.close();
  await chat.context().close();
});

test("script in the chat origin can neither read nor decide approvals", async () => {
  const chat = await signedInPage(browser, jarvis);
  // A model answer with script in it, rendered by the chat: nothing runs.
  const conversation = await chat.evaluate(async () => (await (await fetch("/v1/conversations", { method: "POST" })).json()).id);
  const payload = [
    `<img src=x onerror="window.__pwned=1">`,
    `<script>window.__pwned=2</script>`,
    `[approve](javascript:window.__pwned=3)`,
    `<iframe src="${jarvis.approvals}/"></iframe>`,
    `<form action="${jarvis.approvals}/gate/decide" method="post"><button id="evil">Approve</button></form>`,
  ].join("\n\n");
  await chat.evaluate(async ({ conversation, payload }) => {
    const add = (role, content) => fetch(`/v1/conversations/${conversation}/messages`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ role, content }) });
    await add("user", "Show me something");
    await add("assistant", payload);
  }, { conversation, payload });
  await chat.reload();
  await chat.waitForSelector("body[data-ready=true]");
  await chat.click(`.conversation-item[data-id="${conversation}"] .open`);
  await chat.waitForSelector(".message.assistant");
  await chat.waitForTimeout(500);
  assert.equal(await chat.evaluate(() => window.__pwned), undefined);
  assert.equal(await chat.$("iframe, form[action], #evil"), null, "no frame or form survives the sanitizer");

  // A request waits.
  await chat.fill("#composer", "/open https://example.org/phish");
  await chat.press("#composer", "Enter");
  await chat.waitForSelector(".action-wait");
  const id = await waitForNewPending([]);

  // Even with script running in the chat origin (as if an XSS got
  // through): the approval origin's data cannot be read, and a decision
  // is refused.
  const attempts = await chat.evaluate(async ({ approvals, id }) => {
    const out = {};
    try { await fetch(`${approvals}/gate/pending`, { credentials: "include" }); out.read = "readable"; } catch { out.read = "blocked"; }
    out.decide = await fetch(`${approvals}/gate/decide`, {
      method: "POST", mode: "no-cors", credentials: "include",
      headers: { "content-type": "text/plain" }, body: JSON.stringify({ id, arguments_hash: "x", choice: "once" }),
    }).then((r) => r.type, (e) => `error ${e}`);
    out.count = await (await fetch("/launcher/approvals")).json();
    out.open = await (await fetch("/launcher/approvals/open", { method: "POST" })).json();
    return out;
  }, { approvals: jarvis.approvals, id });
  assert.equal(attempts.read, "blocked");
  assert.equal(attempts.count.pending, 1, "the chat origin learns only how many wait");
  assert.equal(attempts.count.arguments, undefined);
  assert.deepEqual(attempts.open, { opened: true }, "opening gives the page no link");
  await openedUrl();
  assert.deepEqual(pendingIds(), [id], "the request still waits for the person");

  // The person denies it on the approval page.
  await chat.click("#review-approval");
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(await openedUrl());
  const card = page.locator(`article.approval[data-id="${id}"]`);
  await card.waitFor();
  assert.match(await card.locator("pre.arguments").textContent(), /https:\/\/example\.org\/phish/);
  assert.equal(await card.locator("button[data-choice=always]").count(), 0, "opening links is never always allowed");
  await page.waitForTimeout(900);
  await card.locator("button[data-choice=deny]").click();
  await chat.waitForFunction(() => !window.jarvis.chat.turn, null, { timeout: 30_000 });
  assert.match(await chat.textContent(".message.assistant:last-of-type .body"), /You declined this request/);
  assert.equal(existsSync(opened), false, "nothing was opened");
  await context.close();
  await chat.context().close();
});

test("another loopback page can neither list nor decide approvals, and cannot frame the page", async () => {
  const chat = await signedInPage(browser, jarvis);
  const before = pendingIds();
  await chat.fill("#composer", "/sysinfo");
  await chat.press("#composer", "Enter");
  await chat.waitForSelector(".action-wait");
  const id = await waitForNewPending(before);
  // The person is signed in to the approval page in this browser.
  await chat.click("#review-approval");
  const approvalsPage = await chat.context().newPage();
  await approvalsPage.goto(await openedUrl());
  await approvalsPage.waitForSelector(`article.approval[data-id="${id}"]`);

  const evil = await httpServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(`<!doctype html><title>evil</title>
      <iframe id="frame" src="${jarvis.approvals}/"></iframe>
      <form id="form" method="post" action="${jarvis.approvals}/gate/decide" enctype="text/plain">
        <input name='{"id":"${id}","arguments_hash":"x","choice":"once","pad":"' value='"}'>
      </form>`);
  });
  try {
    const page = await chat.context().newPage();
    await page.goto(evil.url);
    const result = await page.evaluate(async (approvals) => {
      const out = {};
      try { await fetch(`${approvals}/gate/pending`, { credentials: "include" }); out.read = "readable"; } catch { out.read = "blocked"; }
      return out;
    }, jarvis.approvals);
    assert.equal(result.read, "blocked");
    // The frame stays empty: frame-ancestors 'none'.
    await page.waitForTimeout(500);
    const framed = page.frames().find((f) => f.url().startsWith(jarvis.approvals));
    const framedText = framed ? await framed.evaluate(() => document.body?.innerText || "").catch(() => "") : "";
    assert.doesNotMatch(framedText, /Approvals|system_info/);
    // A cross-site form post lands on a refusal.
    await Promise.all([page.waitForNavigation(), page.evaluate(() => document.getElementById("form").submit())]);
    assert.match(await page.textContent("body"), /origin_not_allowed|must come from the Jarvis approval page/);
    await page.close();
  } finally {
    await evil.close();
  }
  assert.ok(pendingIds().includes(id), "still waiting for the person");
  await approvalsPage.waitForTimeout(900);
  await approvalsPage.locator(`article.approval[data-id="${id}"] button[data-choice=once]`).click();
  await chat.waitForFunction(() => !window.jarvis.chat.turn, null, { timeout: 30_000 });
  assert.match(await chat.textContent(".message.assistant:last-of-type .body"), /CPU threads/);
  await chat.context().close();
});

test("always allow is used without asking, listed, and revoked on the approval page", async () => {
  const chat = await signedInPage(browser, jarvis);
  const ask = async (text) => {
    await chat.fill("#composer", text);
    await chat.press("#composer", "Enter");
  };
  const before = pendingIds();
  await ask("/sysinfo");
  await chat.waitForSelector(".action-wait");
  const id = await waitForNewPending(before);
  await chat.click("#review-approval");
  const page = await chat.context().newPage();
  await page.goto(await openedUrl());
  const card = page.locator(`article.approval[data-id="${id}"]`);
  await card.waitFor();
  await page.waitForTimeout(900);
  await card.locator("button[data-choice=always]").click();
  await page.waitForSelector('[data-grant="system_info/always"]');
  await chat.waitForFunction(() => !window.jarvis.chat.turn, null, { timeout: 30_000 });

  // Asked again: runs at once, nobody is asked.
  await ask("/sysinfo");
  await chat.waitForFunction(() => !window.jarvis.chat.turn, null, { timeout: 30_000 });
  assert.match(await chat.textContent(".message.assistant:last-of-type .body"), /CPU threads/);

  // A folder allowed on the page is listed; revoking asks again.
  await page.fill("#folder-path", home);
  await page.click("#folder-form button[type=submit]");
  await page.waitForSelector(`[data-folder="${home}"]`);
  await screenshot(page, "gate-permissions-light");
  await page.click('[data-grant="system_info/always"] button');
  await page.waitForSelector('[data-grant="system_info/always"]', { state: "detached" });
  const beforeAgain = pendingIds();
  await ask("/sysinfo");
  await chat.waitForSelector(".action-wait");
  const again = await waitForNewPending(beforeAgain);
  await page.waitForSelector(`article.approval[data-id="${again}"]`);
  await page.waitForTimeout(900);
  await page.click(`article.approval[data-id="${again}"] button[data-choice=deny]`);
  await chat.waitForFunction(() => !window.jarvis.chat.turn, null, { timeout: 30_000 });
  await chat.context().close();
});
