// ESLint for the browser code: typescript-eslint's strict, type-aware rules (the TS counterpart of
// `mypy --strict` + ruff on the Python side). Formatting is Prettier's job, so eslint-config-prettier
// switches off every stylistic rule that would argue with it.
import js from "@eslint/js";
import prettier from "eslint-config-prettier";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "dist-test/", "node_modules/"] },
  js.configs.recommended,
  tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // `${count} devices` is how the pages build their text; numbers print unambiguously.
      "@typescript-eslint/restrict-template-expressions": ["error", { allowNumber: true }],
      // `button.onclick = () => send()` is the idiom for event handlers; a void result there confuses nobody.
      "@typescript-eslint/no-confusing-void-expression": ["error", { ignoreArrowShorthand: true }],
      // tsconfig's noUncheckedIndexedAccess makes every `bytes[i]` `number | undefined`; inside a loop bounded by
      // the length, `bytes[i]!` states what the bounds already prove (typescript-eslint lists the two as at odds).
      "@typescript-eslint/no-non-null-assertion": "off",
      // Prettier wraps code at 120 columns but not comments or strings; this catches those.
      "max-len": ["error", { code: 120, ignoreUrls: true }],
    },
  },
  {
    // Plain JavaScript: this file, and the service worker, which runs in the worker's global scope.
    files: ["eslint.config.js", "public/sw.js"],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: {
      globals: {
        self: "readonly",
        caches: "readonly",
        clients: "readonly",
        fetch: "readonly",
        Response: "readonly",
        URL: "readonly",
      },
    },
  },
  prettier,
);
