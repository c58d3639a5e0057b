// The UI benchmark (scripts/bench runs it on release binaries): from
// `jarvis up` to the UI interactive in chromium, and from pressing Enter
// to the first token painted, against the first token measured on the
// core's own WebSocket in the same run. Prints a Markdown table.
import WebSocket from "ws";
import { freshHome, importModels, startJarvis, launchBrowser, signedInPage } from "./harness.mjs";

const RUNS = Number(process.env.JARVIS_BENCH_UI_RUNS || 5);
const PROMPT = "Say hello.";

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

const home = freshHome("bench");
importModels(home, { llm: true });
const browser = await launchBrowser();
const startedAt = performance.now();
const jarvis = await startJarvis(home);
const page = await signedInPage(browser, jarvis, { signin: jarvis.signin });
const interactive = performance.now() - startedAt;

// Wait until the chat model is loaded (both paths then find it ready).
await page.waitForFunction(() => window.jarvis.engines.some((e) => e.role === "llm" && e.state === "ready"), null, { timeout: 300_000, polling: 250 });

// The two paths alternate, so warm-up and machine load fall on both.
const throughUi = [];
const direct = [];
for (let i = 0; i < RUNS; i++) {
  throughUi.push(await firstTokenThroughUi(page));
  const conversation = await (await fetch(`${jarvis.core}/v1/conversations`, {
    method: "POST", headers: { authorization: `Bearer ${jarvis.token()}` },
  })).json();
  direct.push(await firstTokenDirect(jarvis, conversation.id));
}

await browser.close();
await jarvis.stop();

const ui = median(throughUi);
const core = median(direct);
console.log(`\nUI (median of ${RUNS}, release build, SmolLM2-135M Q8_0, prompt "${PROMPT}")\n`);
console.log("| measure | Jarvis UI | core API directly | UI adds |");
console.log("|---|---:|---:|---:|");
console.log(`| \`jarvis up\` → UI interactive in chromium | ${interactive.toFixed(0)} ms | | |`);
console.log(`| Enter → first token painted / received | ${ui.toFixed(1)} ms | ${core.toFixed(1)} ms | ${(ui - core).toFixed(1)} ms |`);

// Through the UI: Enter pressed → first token painted (measured in the
// page: keydown to the second animation frame after the first token).
async function firstTokenThroughUi(page) {
  // A fresh conversation made before the clock starts, as on the direct
  // path: both prompts have no history.
  await page.evaluate(async () => { await window.jarvis.createConversation(); window.jarvis.show("chat"); });
  await page.fill("#composer", PROMPT);
  const ms = await page.evaluate(() => new Promise((resolve) => {
    const composer = document.querySelector("#composer");
    let pressed = 0;
    window.jarvis.marks.firstTokenPainted = () => {
      requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now() - pressed)));
    };
    pressed = performance.now();
    composer.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
  }));
  await page.waitForFunction(() => !window.jarvis.chat.turn, null, { timeout: 120_000 });
  return ms;
}

// Directly on the core's WebSocket with the token, from this process:
// message sent → first token received.
async function firstTokenDirect(instance, conversationId) {
  const ws = new WebSocket(`${instance.core.replace("http", "ws")}/v1/ws`, {
    headers: { authorization: `Bearer ${instance.token()}` },
  });
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  return new Promise((resolve) => {
    let sent = 0;
    let first = null;
    ws.onmessage = (event) => {
      const m = JSON.parse(event.data);
      if (m.type === "token" && first === null) first = performance.now() - sent;
      if (m.type === "done" || m.type === "error" || m.type === "cancelled") {
        ws.close();
        resolve(first ?? NaN);
      }
    };
    sent = performance.now();
    ws.send(JSON.stringify({ type: "chat", turn_id: "bench", conversation_id: conversationId, content: PROMPT }));
  });
}
