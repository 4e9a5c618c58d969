"""Browser tests: the web app's code and pages in Debian's Chromium via Playwright."""
