// Builds the UI into dist/: two bundled scripts (the chat UI and the
// approval page, served on its own origin), one stylesheet, the pages.
// No network at run time: every library is bundled in.
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync } from "node:fs";

const out = process.env.JARVIS_UI_OUT || "dist";
rmSync(out, { recursive: true, force: true });
mkdirSync(`${out}/assets`, { recursive: true });
await build({
  entryPoints: ["src/app.js", "src/approvals.js"],
  bundle: true,
  minify: true,
  sourcemap: false,
  format: "esm",
  target: ["chrome110", "firefox115", "safari16"],
  outdir: `${out}/assets`,
  legalComments: "linked",
  logLevel: "warning",
});
cpSync("src/app.css", `${out}/assets/app.css`);
cpSync("src/index.html", `${out}/index.html`);
cpSync("src/approvals.html", `${out}/approvals.html`);
cpSync("src/icon.svg", `${out}/assets/icon.svg`);
console.log(`ui: built ${out}/`);
