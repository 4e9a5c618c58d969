// Two builds from one config (run from web/, so paths are relative to it):
//   `vite build`             -> dist/       the three product pages (served by `lockstep serve`)
//   `vite build --mode test` -> dist-test/  the vector-test harness page (used by tests/web only; never shipped)
import { defineConfig } from "vite";

export default defineConfig(({ mode }) => {
  const test = mode === "test";
  const input: Record<string, string> = test
    ? { harness: "tests/harness.html", e2e: "tests/e2e-harness.html", scanner: "tests/scanner-harness.html" }
    : { index: "index.html", app: "app.html", link: "link.html" };
  return {
    base: test ? "/test/" : "/",
    publicDir: test ? false : "public",
    build: {
      outDir: test ? "dist-test" : "dist",
      emptyOutDir: true,
      target: "es2022",
      // No injected polyfill and no inlined assets: the server's CSP allows only same-origin scripts/styles.
      modulePreload: { polyfill: false },
      assetsInlineLimit: 0,
      sourcemap: false,
      rolldownOptions: {
        input,
      },
    },
  };
});
