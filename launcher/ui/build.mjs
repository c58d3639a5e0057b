// Builds the UI into dist/: one bundled script, one stylesheet, the page.
// No network at run time: every library is bundled in.
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync } from "node:fs";

const out = process.env.JARVIS_UI_OUT || "dist";
rmSync(out, { recursive: true, force: true });
mkdirSync(`${out}/assets`, { recursive: true });
await build({
  entryPoints: ["src/app.js"],
  bundle: true,
  minify: true,
  sourcemap: false,
  format: "esm",
  target: ["chrome110", "firefox115", "safari16"],
  outfile: `${out}/assets/app.js`,
  legalComments: "linked",
  logLevel: "warning",
});
cpSync("src/app.css", `${out}/assets/app.css`);
cpSync("src/index.html", `${out}/index.html`);
cpSync("src/icon.svg", `${out}/assets/icon.svg`);
console.log(`ui: built ${out}/`);
