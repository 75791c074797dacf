"""A griffe extension for the documentation site: the docstrings' Sphinx roles as links.

The docstrings are Google style with Sphinx roles (``:class:`~resilient.Registry```,
``:meth:`call```), which read well in ``help()`` and in editors but which mkdocstrings
would show as raw text. When the package is loaded, this rewrites each role into a
cross-reference to the name's entry in the API reference (``[`Registry`][resilient.Registry]``)
when the name has one there, and into plain code otherwise; and a paragraph that ends in
``::`` (reStructuredText's "a literal block follows") ends in ``:``, the indented block
below it being code in Markdown already.

Loaded from mkdocs.yml (``extensions:`` of the mkdocstrings Python handler).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

# The public modules whose names have entries in the API reference (docs/reference/).
PUBLIC = (
    "resilient",
    "resilient.testing",
    "resilient.chaos",
    "resilient.simulate",
    "resilient.httpx",
    "resilient.asgi",
    "resilient.otel",
    "resilient.stores",
    "resilient.stores.redis",
)

ROLE = re.compile(r":(?:py:)?(class|func|meth|attr|mod|exc|data|obj|const):`([^`]+)`")
TITLED = re.compile(r"^(.*?)\s*<([^<>]+)>$")  # :class:`the text <target>`
LITERAL = re.compile(r"^[ \t]*::\n|::$", re.MULTILINE)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of the package into reference links."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Once the package is loaded: map each documented object to its public entry,
        then rewrite every docstring."""
        public = _public_entries(pkg)
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _rewrite(obj.docstring.value, obj, public)


def _objects(root: griffe.Object) -> list[griffe.Object]:
    found: list[griffe.Object] = []
    stack: list[griffe.Object] = [root]
    while stack:
        obj = stack.pop()
        found.append(obj)
        stack.extend(m for m in obj.members.values() if isinstance(m, griffe.Object))
    return found


def _public_entries(pkg: griffe.Module) -> dict[str, str]:
    """Each object's path where it is written (``resilient._breaker.CircuitBreaker.call``)
    and each public path, mapped to the public path its reference entry has."""
    entries: dict[str, str] = {}
    for module_path in PUBLIC:
        module = pkg if module_path == "resilient" else pkg[module_path.removeprefix("resilient.")]
        entries.setdefault(module_path, module_path)  # the page's own heading
        entries.setdefault(module.path, module_path)
        for export in module.exports or ():
            name = export if isinstance(export, str) else export.name
            public = f"{module_path}.{name}"
            target = module[name]
            target = target.final_target if target.is_alias else target
            entries.setdefault(public, public)
            entries.setdefault(target.path, public)
            if target.is_class:
                for member in target.all_members:
                    if not member.startswith("_"):
                        entries.setdefault(f"{public}.{member}", f"{public}.{member}")
                        entries.setdefault(f"{target.path}.{member}", f"{public}.{member}")
    return entries


def _rewrite(text: str, obj: griffe.Object, public: dict[str, str]) -> str:
    def link(match: re.Match[str]) -> str:
        role, written = match.groups()
        titled = TITLED.match(written.strip())
        if titled:
            title, written = titled.groups()
        target = written.strip().lstrip("~").lstrip(".").removesuffix("()")
        shown = target.rsplit(".", 1)[-1] if written.strip().startswith("~") else target
        if role in ("func", "meth"):
            shown += "()"
        if titled:
            shown = title
        entry = _entry(target, obj, public)
        return f"[`{shown}`][{entry}]" if entry else f"`{shown}`"

    # "::" ending a paragraph becomes ":"; a line of "::" alone goes.
    return LITERAL.sub(lambda m: "" if m.group().endswith("\n") else ":", ROLE.sub(link, text))


def _entry(target: str, obj: griffe.Object, public: dict[str, str]) -> str | None:
    """The public reference entry ``target`` names, seen from ``obj``, if it has one."""
    if target in public:
        return public[target]
    head, _, rest = target.partition(".")
    scopes = [obj, *_parents(obj)]
    for scope in scopes:
        try:
            resolved = scope.resolve(head)
        except (griffe.NameResolutionError, ValueError):
            continue
        full = f"{resolved}.{rest}" if rest else resolved
        if full in public:
            return public[full]
    # A bare member name inside a class: a sibling method or attribute.
    for scope in scopes:
        if scope.is_class and f"{scope.path}.{target}" in public:
            return public[f"{scope.path}.{target}"]
    return None


def _parents(obj: griffe.Object) -> list[griffe.Object]:
    parents: list[griffe.Object] = []
    parent = obj.parent
    while parent is not None:
        parents.append(parent)
        parent = parent.parent
    return parents
