// Unit tests of the browser code that needs no browser (state machines, pure cores), run by Node:
// `npm test`, and so by `make test`. Everything that needs a page runs in Chromium from tests/web instead.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["tests/unit/**/*.test.ts"],
    environment: "node",
  },
});
