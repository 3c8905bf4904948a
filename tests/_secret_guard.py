"""Session-wide audit material: every log record and every ModuleAIError message of the test run.

Registered from conftest.py; `tests/test_zz_secret_audit.py` (collected last) asserts that the test
API key and the URL password appear in none of them.
"""

from __future__ import annotations

import logging

from module_ai import errors

URL_PASSWORD = "urlpw-0123456789abcdef"
"""The password tests put in URLs (https://bob:URL_PASSWORD@host); audited like the API key."""

LOG_LINES: list[str] = []
ERROR_MESSAGES: list[str] = []


class _Collect(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            LOG_LINES.append(self.format(record) + repr(record.args))
        except Exception:  # a record that cannot format is still audited by its raw msg
            LOG_LINES.append(str(record.msg))


def install() -> None:
    root = logging.getLogger()
    root.addHandler(_Collect(level=logging.DEBUG))
    root.setLevel(logging.DEBUG)
    original = errors.ModuleAIError._compose

    def compose_and_record(self) -> str:
        text = original(self)
        ERROR_MESSAGES.append(text)
        return text

    errors.ModuleAIError._compose = compose_and_record
