/**
 * The size budget of the browser entry: everything `taskmill-bridge` exports
 * (client, WebSocket transport, MessagePack codec, task store, JSON lines),
 * bundled for the browser, minified and gzipped, stays under 16 KB. The React
 * entry is measured without React itself (a peer dependency).
 */

import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { describe, expect, it } from "vitest";

const BUDGET_BYTES = 16 * 1024;

async function gzipped(entry: string, external: string[] = []): Promise<number> {
  const result = await build({
    entryPoints: [fileURLToPath(new URL(`../src/${entry}`, import.meta.url))],
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    external,
    write: false,
    logLevel: "silent",
  });
  const code = result.outputFiles[0]?.contents;
  if (code === undefined) throw new Error("esbuild produced nothing");
  return gzipSync(code, { level: 9 }).length;
}

describe("bundle size", () => {
  it(`the browser entry (all of taskmill-bridge) is under ${BUDGET_BYTES / 1024} KB gzipped`, async () => {
    const bytes = await gzipped("index.ts");
    console.info(`taskmill-bridge: ${(bytes / 1024).toFixed(1)} KB gzipped (budget ${BUDGET_BYTES / 1024} KB)`);
    expect(bytes).toBeLessThan(BUDGET_BYTES);
  });

  it("the React entry is small (React itself, a peer dependency, not counted)", async () => {
    const bytes = await gzipped("react.ts", ["react"]);
    console.info(`taskmill-bridge/react: ${(bytes / 1024).toFixed(1)} KB gzipped, without React`);
    expect(bytes).toBeLessThan(2 * 1024);
  });
});
