"""Placeholder until the report lands."""

from typing import Any


def format_table(result: Any) -> str:
    return repr(result)


def render_html(result: Any) -> str:
    return ""
