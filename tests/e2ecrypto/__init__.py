"""Olm/Megolm interop: the TypeScript implementation (web/src/e2e) in Chromium against vodozemac."""
