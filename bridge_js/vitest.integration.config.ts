import { defineConfig } from "vitest/config";

// Runs against the real Python sidecar; see test/integration.test.ts.
export default defineConfig({
  test: {
    include: ["test/integration*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    fileParallelism: false,
  },
});
