"""Reading the HTML page `bank-pipeline report --html` writes, as a browser renders it."""

from __future__ import annotations

from html.parser import HTMLParser


class ReportPage(HTMLParser):
    """A report page's table rows, chart segments, external references and as-of instant."""

    def __init__(self):
        super().__init__()
        self.rows, self.segments, self._row, self._cell, self.external = [], [], None, None, []
        self.asof: str | None = None
        self._currency = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href"):
            if attrs.get(name):
                self.external.append(attrs[name])
        if attrs.get("class") == "asof":
            self.asof = attrs.get("data-asof")
        if tag == "tr" and "data-category" in attrs:
            self._row = {**attrs, "cells": []}
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "svg":
            self._currency = attrs.get("data-currency")
        elif tag == "rect" and attrs.get("class") == "segment":
            self.segments.append({**attrs, "currency": self._currency})

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row["cells"].append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
