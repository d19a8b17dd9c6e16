"""The test suite's browser: the system Chromium through Playwright (see dev.browser)."""

from dev.browser import chromium, chromium_path

__all__ = ["chromium", "chromium_path"]
