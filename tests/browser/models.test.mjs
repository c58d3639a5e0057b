// The models screen's management actions in chromium against the real
// `jarvis up`: activate another installed version (the core swaps it in),
// roll back, and remove unused versions after a confirmation.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { LLM_FILE, freshHome, jarvis as run, importModels, startJarvis, launchBrowser, signedInPage, screenshot } from "./harness.mjs";

const NAME = "smollm2-135m-instruct";
let home;
let jarvis;
let browser;

before(async () => {
  home = freshHome("models");
  importModels(home, { llm: true }); // the catalog's version, activated
  for (const version of ["custom-1", "custom-2"]) {
    run(home, ["models", "import", LLM_FILE, "--name", NAME, "--version", version]);
  }
  jarvis = await startJarvis(home);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await jarvis?.stop();
});

const row = (version) => `[data-installed="${NAME}/${version}"]`;

test("activate, roll back and remove unused versions from the models screen", async () => {
  const page = await signedInPage(browser, jarvis);
  await page.click("#nav-models");
  await page.waitForSelector(`${row("q4_1-1")} .badge.active`);
  assert.equal(await page.$(`${row("custom-1")} .badge.active`), null);

  // Activate: the pointer moves and the core loads that version.
  await page.click(`${row("custom-1")} button:has-text("Activate")`);
  await page.waitForSelector(`${row("custom-1")} .badge.active`);
  await page.waitForSelector(`${row("q4_1-1")} .badge:has-text("previous")`);
  await page.waitForFunction((name) => window.jarvis.engines.some((e) => e.role === "llm" && e.state === "ready" && (e.version || e.model?.version) === "custom-1"), NAME, { timeout: 120_000, polling: 250 });
  await screenshot(page, "models-versions-light");

  // Roll back: the previous version is active again.
  await page.click(`${row("custom-1")} button:has-text("Roll back")`);
  await page.waitForSelector(`${row("q4_1-1")} .badge.active`);
  await page.waitForSelector(`${row("custom-1")} .badge:has-text("previous")`);

  // Remove unused: declining keeps everything; confirming removes the one
  // version that is neither active nor previous, from the disk too.
  await page.click("#gc-models");
  await page.click("dialog button[value=cancel]");
  assert.ok(await page.$(row("custom-2")));
  await page.click("#gc-models");
  await page.click("dialog button[value=ok]");
  await page.waitForSelector(".toast:has-text('Removed 1 version(s)')");
  await page.waitForSelector(row("custom-2"), { state: "detached" });
  assert.equal(existsSync(join(home, "models", NAME, "custom-2")), false);
  assert.ok(existsSync(join(home, "models", NAME, "custom-1")), "the previous version stays");
  assert.deepEqual(page.jarvisErrors, []);
  await page.context().close();
});
