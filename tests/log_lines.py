"""A logging handler that keeps every formatted JSON line, for tests that search the log."""
from __future__ import annotations

import logging

from cds_service.logging_setup import JsonFormatter


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))
