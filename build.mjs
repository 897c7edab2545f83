// Builds the front-end bundles into static/build/ with esbuild.
// Entry points that do not exist (yet) are skipped, so each bundle can grow on its own.
import { build } from "esbuild";
import { existsSync, mkdirSync } from "node:fs";

const entries = [
  // The tracking snippet: tiny, no dependencies, ES2017 for old browsers.
  { in: "static/src/tracker/script.js", out: "static/build/script.js", target: "es2017", format: "iife" },
  // The dashboard: D3 and the live client.
  { in: "static/src/dashboard/main.js", out: "static/build/dashboard.js", target: "es2020", format: "iife" },
];

mkdirSync("static/build", { recursive: true });
for (const entry of entries) {
  if (!existsSync(entry.in)) continue;
  await build({
    entryPoints: [entry.in],
    outfile: entry.out,
    bundle: true,
    minify: true,
    format: entry.format,
    target: entry.target,
    legalComments: "none",
    logLevel: "warning",
  });
}
