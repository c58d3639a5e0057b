// The UI a person uses every day, in Debian's chromium against the real
// `jarvis up` with the real test models: chat streaming and Stop,
// regenerate, conversations (rename, search, delete with undo, export),
// settings across a reload, push-to-talk with a fake microphone, update
// banners, keyboard-only use, the accessibility scan, and screenshots.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  freshHome, importModels, startJarvis, launchBrowser, signedInPage, screenshot, axeViolations, espeakWav, writeJson,
} from "./harness.mjs";

let jarvis;
let browser;
const SPOKEN = "Please remind me to water the plants tomorrow.";

before(async () => {
  const home = freshHome("ui");
  importModels(home, { llm: true, whisper: true });
  // An update the background check staged, and the last switch's outcome:
  // what the updater writes into update-state.json.
  writeJson(join(home, "update-state.json"), {
    highest_accepted: "0.2.0",
    staged: "0.3.0",
    notice: { kind: "rolled_back", version: "0.2.1", previous: "0.2.0", reason: "the core exited during start-up (code 1)" },
    rejected: ["0.2.1"],
  });
  jarvis = await startJarvis(home);
  await waitForEngines(jarvis, ["llm", "stt"]);
  browser = await launchBrowser({ fakeAudio: espeakWav(SPOKEN, join(home, "speech.wav")) });
});

after(async () => {
  await browser?.close();
  await jarvis?.stop();
});

// Models load in the background after start-up; the UI says so, and the
// tests wait for both to be ready.
async function waitForEngines(instance, roles) {
  const deadline = Date.now() + 180_000;
  for (;;) {
    const ready = await fetch(`${instance.core}/readyz`).then((r) => r.json()).catch(() => ({}));
    const engines = ready.models?.engines || [];
    if (roles.every((role) => engines.some((e) => e.role === role && e.state === "ready"))) return;
    if (Date.now() > deadline) throw new Error(`engines not ready: ${JSON.stringify(engines)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

// Waits until the turn in progress (started before this is called) ends.
async function waitForAnswer(page) {
  await page.waitForFunction(() => !window.jarvis.chat.turn, null, { timeout: 120_000 });
}

test("chat streams a Markdown answer, shows its speed, and regenerates", async () => {
  const page = await signedInPage(browser, jarvis);
  await screenshot(page, "chat-empty-light");
  // A short answer budget keeps the test quick on a 2-core machine.
  const id = await page.evaluate(async () => {
    const { id } = await (await fetch("/v1/conversations", { method: "POST" })).json();
    await fetch(`/v1/conversations/${id}/settings`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ max_tokens: 40 }) });
    return id;
  });
  await page.reload();
  await page.waitForSelector("body[data-ready=true]");
  await page.click(`.conversation-item[data-id="${id}"] .open`);
  const composer = page.locator("#composer");
  await composer.fill("Write a haiku about the sea.");
  await composer.press("Enter");
  await page.waitForSelector("#streaming-answer .body.streaming");
  await page.waitForFunction(() => window.jarvis.chat.turn?.text.length > 0, null, { timeout: 120_000 });
  await waitForAnswer(page);
  const answer = await page.textContent(".message.assistant:last-of-type .body");
  assert.ok(answer.trim().length > 0, "an answer was painted");
  assert.match(await page.textContent("#speed"), /tok\/s/);
  await screenshot(page, "chat-answer-light");
  // The answer is in memory, under a title made from the question.
  const stored = await page.evaluate(async (id) => (await fetch(`/v1/conversations/${id}`)).json(), id);
  assert.equal(stored.messages.length, 2);
  assert.equal(stored.title, "Write a haiku about the sea.");
  // Regenerate replaces the last answer.
  await page.click(".message.assistant:last-of-type button:has-text('Regenerate')");
  await waitForAnswer(page);
  const again = await page.evaluate(async (id) => (await fetch(`/v1/conversations/${id}`)).json(), stored.id);
  assert.equal(again.messages.length, 2, "the answer was replaced, not added");
  assert.equal(again.messages[1].role, "assistant");
  assert.notEqual(again.messages[1].created_at, stored.messages[1].created_at, "a new answer was written");
  assert.deepEqual(page.jarvisErrors, []);
  await page.context().close();
});

test("Stop (Esc) cancels the turn and keeps what was said", async () => {
  const page = await signedInPage(browser, jarvis);
  await page.click("#new-chat");
  await page.fill("#composer", "Count from one to one hundred in words, one per line.");
  await page.press("#composer", "Enter");
  await page.waitForFunction(() => window.jarvis.chat.turn?.text.length > 10, null, { timeout: 120_000 });
  await page.keyboard.press("Escape");
  await page.waitForFunction(() => !window.jarvis.chat.turn, null, { timeout: 30_000 });
  assert.equal(await page.textContent("#speed"), "Stopped");
  const stored = await page.evaluate(async () => {
    const list = await (await fetch("/v1/conversations")).json();
    return (await fetch(`/v1/conversations/${list.conversations[0].id}`)).json();
  });
  assert.equal(stored.messages.at(-1).role, "assistant", "the partial answer is kept");
  assert.ok(stored.messages.at(-1).content.length > 0);
  await page.context().close();
});

test("conversations: rename, search titles and content, delete with undo, export", async () => {
  const page = await signedInPage(browser, jarvis);
  // Two conversations made through the API the UI uses.
  const ids = await page.evaluate(async () => {
    const make = async (text) => {
      const { id } = await (await fetch("/v1/conversations", { method: "POST" })).json();
      await fetch(`/v1/conversations/${id}/messages`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ role: "user", content: text }) });
      return id;
    };
    return [await make("Plan a trip to Lisbon"), await make("Recipe with aubergines and miso")];
  });
  await page.reload();
  await page.waitForSelector("body[data-ready=true]");
  // Rename.
  await page.click(`.conversation-item[data-id="${ids[0]}"] .menu`);
  await page.click("dialog button[value=rename]");
  await page.fill("#prompt-input", "Lisbon holiday");
  await page.press("#prompt-input", "Enter");
  await page.waitForSelector(`.conversation-item[data-id="${ids[0]}"] .open:has-text("Lisbon holiday")`);
  // Search by title and by content.
  await page.fill("#search", "holiday");
  await page.waitForFunction(() => document.querySelectorAll(".conversation-item").length === 1);
  await page.fill("#search", "MISO");
  await page.waitForSelector(`.conversation-item[data-id="${ids[1]}"]`);
  assert.equal(await page.locator(".conversation-item").count(), 1);
  await page.fill("#search", "");
  await page.waitForSelector(`.conversation-item[data-id="${ids[0]}"]`);
  // Export one as Markdown and JSON.
  await page.click(`.conversation-item[data-id="${ids[1]}"] .menu`);
  const [markdown] = await Promise.all([page.waitForEvent("download"), page.click("dialog button[value=export-md]")]);
  const md = readFileSync(await markdown.path(), "utf8");
  assert.match(md, /^# Recipe with aubergines and miso/m);
  assert.match(md, /## You\n\nRecipe with aubergines and miso/);
  await page.click(`.conversation-item[data-id="${ids[1]}"] .menu`);
  const [json] = await Promise.all([page.waitForEvent("download"), page.click("dialog button[value=export-json]")]);
  assert.equal(JSON.parse(readFileSync(await json.path(), "utf8")).id, ids[1]);
  // Export all.
  await page.click("#export-all");
  const [all] = await Promise.all([page.waitForEvent("download"), page.click("dialog button[value=ok]")]);
  assert.match(readFileSync(await all.path(), "utf8"), /Lisbon holiday/);
  await page.click("dialog button[value=cancel]");
  // Delete, undo, delete for good.
  await page.click(`.conversation-item[data-id="${ids[0]}"] .menu`);
  await page.click("dialog button[value=delete]");
  await page.waitForSelector(`.conversation-item[data-id="${ids[0]}"]`, { state: "detached" });
  await page.click(".toast button:has-text('Undo')");
  await page.waitForSelector(`.conversation-item[data-id="${ids[0]}"]`);
  await page.click(`.conversation-item[data-id="${ids[0]}"] .menu`);
  await page.click("dialog button[value=delete]");
  await page.waitForFunction(async (id) => (await fetch(`/v1/conversations/${id}`)).status === 404, ids[0], { timeout: 15_000, polling: 500 });
  await page.context().close();
});

test("conversation settings persist across a reload", async () => {
  const page = await signedInPage(browser, jarvis);
  const id = await page.evaluate(async () => (await (await fetch("/v1/conversations", { method: "POST" })).json()).id);
  await page.reload();
  await page.waitForSelector("body[data-ready=true]");
  await page.click(`.conversation-item[data-id="${id}"] .open`);
  await page.click("button[aria-label='Conversation settings']");
  await page.fill("#setting-system", "You are a pirate.");
  await page.fill("#setting-temperature", "0.3");
  await page.fill("#setting-max-tokens", "64");
  assert.equal(await page.isChecked("#setting-model-actions"), false, "off unless the person turns it on");
  await page.check("#setting-model-actions");
  await screenshot(page, "settings-dialog-light");
  await page.click("#save-settings");
  await page.waitForSelector(".toast:has-text('Settings saved')");
  await page.reload();
  await page.waitForSelector("body[data-ready=true]");
  await page.click(`.conversation-item[data-id="${id}"] .open`);
  await page.click("button[aria-label='Conversation settings']");
  assert.equal(await page.inputValue("#setting-system"), "You are a pirate.");
  assert.equal(await page.inputValue("#setting-temperature"), "0.3");
  assert.equal(await page.inputValue("#setting-max-tokens"), "64");
  assert.equal(await page.isChecked("#setting-model-actions"), true);
  const stored = await page.evaluate(async (id) => (await fetch(`/v1/conversations/${id}/settings`)).json(), id);
  assert.equal(stored.model_actions, true);
  await page.context().close();
});

test("push-to-talk puts the transcript into the composer for editing", async () => {
  const page = await signedInPage(browser, jarvis);
  await page.keyboard.press("Control+Shift+Space");
  await page.waitForSelector("#talk[aria-pressed=true]");
  await page.waitForTimeout(4500); // the fake microphone plays the WAV
  await page.keyboard.press("Control+Shift+Space");
  await page.waitForFunction(() => document.querySelector("#composer").value.length > 0, null, { timeout: 60_000 });
  const text = (await page.inputValue("#composer")).toLowerCase();
  // whisper tiny.en hears "plants" as "planet" now and then.
  assert.match(text, /remind me to water the/);
  const sent = await page.evaluate(() => window.jarvis.chat.turn);
  assert.equal(sent, null, "nothing is sent before the person does");

  // Holding the microphone button records; letting go transcribes, and the
  // new words are added after what the composer already holds.
  // A quick tap (letting go before the microphone even opened) records
  // nothing and says how to use the button.
  await page.click("#talk");
  await page.waitForFunction(() => /Hold the microphone button/.test(document.querySelector("#voice-status").textContent));
  assert.equal(await page.getAttribute("#talk", "aria-pressed"), "false");
  assert.deepEqual(page.jarvisErrors, []);

  await page.fill("#composer", "Draft:");
  const talk = page.locator("#talk");
  await talk.hover();
  await page.mouse.down();
  await page.waitForSelector("#talk[aria-pressed=true]");
  assert.match(await page.textContent("#voice-status"), /Listening/);
  await page.waitForTimeout(4500);
  await page.mouse.up();
  await page.waitForSelector("#talk[aria-pressed=false]");
  await page.waitForFunction(() => document.querySelector("#composer").value.length > "Draft:".length, null, { timeout: 60_000 });
  const held = (await page.inputValue("#composer")).toLowerCase();
  assert.match(held, /^draft:/, `the draft is kept: ${held}`);
  assert.match(held, /water the/);
  assert.equal(await page.evaluate(() => window.jarvis.chat.turn), null, "still nothing is sent");
  await page.context().close();
});

test("update banners: a staged update and the last rollback", async () => {
  const page = await signedInPage(browser, jarvis);
  assert.match(await page.textContent("#update-ready"), /update is ready \(Jarvis 0\.3\.0\).*restart/);
  assert.match(await page.textContent("#update-notice"), /0\.2\.1 did not keep running and was rolled back to 0\.2\.0: the core exited/);
  await screenshot(page, "update-banners-light");
  await page.click("#update-notice button:has-text('Dismiss')");
  await page.waitForSelector("#update-notice", { state: "detached" });
  await page.reload();
  await page.waitForSelector("body[data-ready=true]");
  assert.equal(await page.$("#update-notice"), null, "a dismissed notice stays dismissed");
  await page.context().close();
});

test("keyboard only: shortcuts help, new conversation, send, dialogs", async () => {
  const page = await signedInPage(browser, jarvis);
  await page.keyboard.press("Control+/");
  await page.waitForSelector("dialog[open] h2:has-text('Keyboard shortcuts')");
  await page.keyboard.press("Escape");
  await page.waitForSelector("dialog", { state: "detached" });
  await page.keyboard.press("Control+k");
  assert.equal(await page.evaluate(() => document.activeElement.id), "search");
  await page.keyboard.press("Control+Shift+O");
  assert.equal(await page.evaluate(() => document.activeElement.id), "composer");
  await page.keyboard.type("Say hello.");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => window.jarvis.chat.turn?.text.length > 0, null, { timeout: 120_000 });
  await page.keyboard.press("Escape");
  await page.waitForFunction(() => !window.jarvis.chat.turn, null, { timeout: 30_000 });
  // Tab reaches the conversation menu, Enter opens it, Esc closes it and
  // focus comes back.
  await page.focus(".conversation-item .menu");
  await page.keyboard.press("Enter");
  await page.waitForSelector("dialog[open]");
  assert.equal(await page.evaluate(() => document.activeElement.value), "rename");
  await page.keyboard.press("Escape");
  await page.waitForSelector("dialog", { state: "detached" });
  assert.match(await page.evaluate(() => document.activeElement.getAttribute("aria-label")), /^Actions for/);
  await page.context().close();
});

test("every screen passes the accessibility scan and is captured light and dark", async () => {
  for (const colorScheme of ["light", "dark"]) {
    const page = await signedInPage(browser, jarvis, { signin: jarvis.openUrl(), colorScheme });
    // A conversation with the kinds of Markdown answers have.
    const id = await page.evaluate(async () => {
      const { id } = await (await fetch("/v1/conversations", { method: "POST" })).json();
      const add = (role, content) => fetch(`/v1/conversations/${id}/messages`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ role, content }) });
      await add("user", "How do I read a file line by line in Python?");
      await add("assistant", "Open it with a `with` block and loop over it:\n\n```python\nwith open(\"notes.txt\") as f:\n    for line in f:\n        print(line.rstrip())\n```\n\n- The file is **closed** for you.\n- Each `line` keeps its newline.");
      return id;
    });
    await page.reload();
    await page.waitForSelector("body[data-ready=true]");
    await page.click(`.conversation-item[data-id="${id}"] .open`);
    await page.waitForSelector(".message");
    for (const view of ["chat", "models", "status"]) {
      if (view !== "chat") await page.click(`#nav-${view}`);
      if (view === "status") {
        await page.waitForSelector("#doctor");
        assert.match(await page.textContent("#updates-mode"), /development build/);
      }
      if (view === "models") await page.waitForSelector("#installed .model-row");
      const violations = await axeViolations(page);
      assert.deepEqual(violations, [], `${view} (${colorScheme}) has serious accessibility violations`);
      await screenshot(page, `${view}-${colorScheme}`);
    }
    await page.context().close();
  }
});

test("code blocks are highlighted and their Copy button copies exactly the code", async () => {
  const page = await signedInPage(browser, jarvis);
  const code = 'fn main() {\n    let greeting = "<b>hi</b> & bye";\n    println!("{greeting}");\n}';
  const id = await page.evaluate(async (code) => {
    const { id } = await (await fetch("/v1/conversations", { method: "POST" })).json();
    const add = (role, content) => fetch(`/v1/conversations/${id}/messages`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ role, content }) });
    await add("user", "Hello world in Rust?");
    await add("assistant", `Here:\n\n\`\`\`rust\n${code}\n\`\`\`\n\nAnd a second block:\n\n\`\`\`\nplain text\n\`\`\``);
    return id;
  }, code);
  await page.reload();
  await page.waitForSelector("body[data-ready=true]");
  await page.click(`.conversation-item[data-id="${id}"] .open`);
  await page.waitForSelector(".message.assistant pre code.hljs");
  assert.ok(await page.$(".message.assistant pre code.language-rust .hljs-keyword"), "Rust keywords are highlighted");
  const buttons = page.locator(".message.assistant .copy-code");
  assert.equal(await buttons.count(), 2, "one Copy button per code block");
  await buttons.first().click();
  await page.waitForFunction(() => document.querySelector(".message.assistant .copy-code").textContent === "Copied");
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert.equal(copied.replace(/\n$/, ""), code, "the clipboard holds the code, not its markup or the button");
  await buttons.nth(1).click();
  assert.equal((await page.evaluate(() => navigator.clipboard.readText())).trim(), "plain text");
  await screenshot(page, "chat-code-copied-light");
  await page.context().close();
});
