"""The status page of :mod:`resilient.asgi`: one self-contained HTML document.

The page carries no data of its own: its script fetches ``/health`` and builds every row
with ``textContent``, so a guard's name or reason is always text, never markup. The
server fills in four attributes of ``<body>`` (HTML-escaped) and the title; nothing else
varies, so the script and the style are allowed by their hashes in the page's
Content-Security-Policy and no other script can run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Mapping, Sequence

__all__ = ["CONTENT_SECURITY_POLICY", "render"]

_STYLE = """
:root { color-scheme: light dark; --pass: #1a7f37; --warn: #9a6700; --fail: #cf222e;
  --line: #d0d7de; --muted: #656d76; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: .75rem; }
h1 { font-size: 1.35rem; margin: 0; }
h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
.muted { color: var(--muted); }
.badge { display: inline-block; padding: .05rem .55rem; border-radius: 1rem; color: #fff;
  font-weight: 600; font-size: .85rem; }
.badge.pass, .badge.healthy { background: var(--pass); }
.badge.warn, .badge.degraded { background: var(--warn); }
.badge.fail, .badge.unavailable { background: var(--fail); }
.badge.unknown { background: var(--muted); }
tr[data-status="warn"] > td:first-child { box-shadow: inset 4px 0 var(--warn); }
tr[data-status="fail"] > td:first-child { box-shadow: inset 4px 0 var(--fail); }
#notes { margin: .75rem 0; padding: 0; list-style: none; }
#notes li { border-left: 4px solid var(--warn); padding: .25rem .6rem; margin: .25rem 0; }
#notes li.error { border-color: var(--fail); }
table { border-collapse: collapse; width: 100%; margin-top: .5rem; }
th, td { text-align: left; vertical-align: top; padding: .4rem .5rem;
  border-bottom: 1px solid var(--line); }
th { font-size: .8rem; text-transform: uppercase; letter-spacing: .03em; }
td.name { font-weight: 600; word-break: break-all; }
td.since { white-space: nowrap; }
td.reason { max-width: 28rem; overflow-wrap: anywhere; white-space: pre-wrap; }
.critical { font-size: .7rem; border: 1px solid var(--fail); color: var(--fail);
  border-radius: .3rem; padding: 0 .3rem; margin-left: .3rem; }
.timeline { display: flex; flex-wrap: wrap; gap: .2rem; }
.step { font-size: .75rem; padding: 0 .35rem; border-radius: .3rem; color: #fff; }
.step.healthy { background: var(--pass); } .step.degraded { background: var(--warn); }
.step.unavailable { background: var(--fail); }
#trail { padding-left: 1.25rem; } #trail li { margin: .15rem 0; overflow-wrap: anywhere; }
#operator { margin: 1rem 0; display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
#operator input { padding: .25rem .4rem; }
button { margin: 0 .2rem .2rem 0; cursor: pointer; }
#message:empty { display: none; }
#message { margin: .5rem 0; padding: .35rem .6rem; border-left: 4px solid var(--muted); }
"""

_SCRIPT = r"""
"use strict";
(() => {
  const body = document.body;
  const healthUrl = body.dataset.health;
  const actionsUrl = body.dataset.actions || "";
  const actionsByKind = JSON.parse(body.dataset.kinds || "{}");
  const refreshMs = Math.max(500, Number(body.dataset.refresh) * 1000 || 5000);
  let token = "";  // in page memory only: never stored, sent only as a header
  let timer = null;

  const byId = (id) => document.getElementById(id);
  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };
  const ago = (seconds) => {
    if (!Number.isFinite(seconds)) return "?";
    const s = Math.max(0, seconds);
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 172800) return Math.round(s / 3600) + " h";
    return Math.round(s / 86400) + " d";
  };
  const secondsBetween = (earlier, later) => (Date.parse(later) - Date.parse(earlier)) / 1000;
  // Links only to http(s) or to a path on this site: "/\\evil.example" and "//evil" are
  // other sites to a browser, and "javascript:" runs code.
  const safeHref = (value) =>
    /^https?:\/\/[^\\]*$/i.test(value) || /^\/(?![\/\\])[^\\]*$/.test(value) ? value : null;
  // A path segment for a guard's name: "." and ".." would be resolved away by the browser.
  const segment = (value) =>
    value === "." || value === ".." ? value.replace(/\./g, "%2E") : encodeURIComponent(value);

  function runbookCell(links) {
    const cell = el("td", "runbook");
    const runbook = links && links.runbook;
    if (!runbook) return cell;
    const href = safeHref(runbook);
    if (href) {
      const a = el("a", null, "runbook");
      a.href = href;
      a.rel = "noopener noreferrer";
      a.target = "_blank";
      a.title = runbook;
      cell.append(a);
    } else {
      cell.append(el("span", null, runbook));
    }
    return cell;
  }

  function timelineCell(transitions, now) {
    const cell = el("td", "recent");
    const line = el("div", "timeline");
    for (const t of transitions || []) {
      const step = el("span", "step " + t.new_health, t.new_state);
      step.title = t.old_state + " \u2192 " + t.new_state + ", " +
        ago(secondsBetween(t.time, now)) + " ago: " + t.reason;
      line.append(step);
    }
    cell.append(line);
    return cell;
  }

  function actionsCell(name, kind) {
    const cell = el("td", "actions");
    for (const action of actionsByKind[kind] || []) {
      const button = el("button", null, action.replace(/_/g, " "));
      button.type = "button";
      button.addEventListener("click", () => act(name, action));
      cell.append(button);
    }
    return cell;
  }

  function render(data) {
    const now = data.time;
    const overall = byId("overall");
    overall.textContent = data.status;
    overall.className = "badge " + (["pass", "warn", "fail"].includes(data.status)
      ? data.status : "unknown");
    byId("updated").textContent = "updated " + new Date().toLocaleTimeString() +
      (data.version ? " \u00b7 version " + data.version : "");
    const notes = byId("notes");
    notes.replaceChildren(...(data.notes || []).map((note) => el("li", null, note)));
    const rows = [];
    for (const [key, entries] of Object.entries(data.checks || {})) {
      for (const entry of entries) {
        const row = el("tr");
        row.dataset.guard = key;
        row.dataset.status = entry.status;
        row.dataset.state = entry.observedValue;
        const name = el("td", "name", key);
        if (entry.critical) name.append(el("span", "critical", "critical"));
        const health = el("td", "health");
        health.append(el("span", "badge " + (entry.health || entry.status),
          entry.health || entry.status));
        row.append(
          name,
          el("td", "kind", entry.componentType),
          el("td", "state", entry.observedValue),
          health,
          el("td", "since muted", entry.since ? ago(secondsBetween(entry.since, now)) : ""),
          el("td", "reason", entry.reason || entry.output || ""),
          runbookCell(entry.links),
          timelineCell(entry.transitions, now),
        );
        if (actionsUrl) row.append(actionsCell(key, entry.componentType));
        rows.push(row);
      }
    }
    if (!rows.length) {
      const row = el("tr");
      const cell = el("td", "muted", "no guards registered");
      cell.colSpan = 9;
      row.append(cell);
      rows.push(row);
    }
    byId("guards").replaceChildren(...rows);
    byId("trail").replaceChildren(...(data.transitions || []).slice().reverse().map((t) =>
      el("li", null, ago(secondsBetween(t.time, now)) + " ago \u00b7 " + t.guard + ": " +
        t.old_state + " \u2192 " + t.new_state + " \u00b7 " + t.reason)));
    body.dataset.rendered = "true";
  }

  function showError(text) {
    const overall = byId("overall");
    overall.textContent = "unknown";
    overall.className = "badge unknown";
    byId("notes").replaceChildren(el("li", "error", text));
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const response = await fetch(healthUrl, {
        cache: "no-store", headers: { Accept: "application/health+json" },
      });
      render(await response.json());  // a 503 carries the same document
    } catch (error) {
      showError("could not read " + healthUrl + ": " + error + " (showing nothing stale)");
      byId("guards").replaceChildren();
    }
    timer = setTimeout(refresh, refreshMs);
  }

  async function act(name, action) {
    const message = byId("message");
    if (!token) {
      message.textContent = "Enter the operator token first.";
      byId("token").focus();
      return;
    }
    if (!window.confirm(action.replace(/_/g, " ") + " " + name + "?")) return;
    const reason = byId("reason").value.trim();
    const url = actionsUrl + "/" + segment(name) + "/" + encodeURIComponent(action);
    try {
      const response = await fetch(url, {
        method: "POST",
        cache: "no-store",
        headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
        body: JSON.stringify(reason ? { reason } : {}),
      });
      const text = await response.text();
      if (response.status === 401) {
        token = "";
        byId("token").value = "";
      }
      message.textContent = response.ok
        ? action.replace(/_/g, " ") + " " + name + ": done"
        : "refused (" + response.status + "): " + text;
    } catch (error) {
      message.textContent = "request failed: " + error;
    }
    refresh();
  }

  if (actionsUrl) {
    byId("operator").hidden = false;
    byId("action-head").hidden = false;
    byId("token").addEventListener("input", (event) => { token = event.target.value; });
  }
  refresh();
})();
"""


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


CONTENT_SECURITY_POLICY = (
    "default-src 'none'; "
    f"script-src {_csp_hash(_SCRIPT)}; "
    f"style-src {_csp_hash(_STYLE)}; "
    "connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""Only the page's own script and style run; it talks to its own origin only; no other
site may frame it (its buttons act on guards)."""


def render(
    *,
    title: str,
    health_url: str,
    actions_url: str | None,
    refresh: float,
    actions_by_kind: Mapping[str, Sequence[str]],
) -> bytes:
    """The page as UTF-8 bytes; every value is escaped for the place it goes."""

    def attribute(value: str) -> str:
        return html.escape(value, quote=True)

    kinds = json.dumps({kind: list(names) for kind, names in actions_by_kind.items()})
    actions = actions_url if actions_url is not None else ""
    page = (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{html.escape(title)}</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n"
        f'<body data-health="{attribute(health_url)}" data-actions="{attribute(actions)}" '
        f'data-kinds="{attribute(kinds if actions_url is not None else "{}")}" '
        f'data-refresh="{refresh!r}">\n'
        "<header>\n"
        f"<h1>{html.escape(title)}</h1>\n"
        '<span id="overall" class="badge unknown">loading</span>\n'
        '<span id="updated" class="muted"></span>\n'
        "</header>\n"
        "<noscript><p>This page needs JavaScript. The same data is at "
        f'<a href="{attribute(health_url)}">{html.escape(health_url)}</a>.</p></noscript>\n'
        '<ul id="notes"></ul>\n'
        '<div id="operator" hidden>\n'
        '<label>Operator token <input id="token" type="password" autocomplete="off" '
        'spellcheck="false"></label>\n'
        '<label>Reason <input id="reason" type="text" maxlength="200" '
        'placeholder="why (recorded in the audit trail)"></label>\n'
        "</div>\n"
        '<div id="message" role="status"></div>\n'
        "<table>\n<thead><tr><th>Guard</th><th>Kind</th><th>State</th><th>Health</th>"
        "<th>For</th><th>Reason</th><th>Runbook</th><th>Recent transitions</th>"
        '<th id="action-head" hidden>Actions</th></tr></thead>\n'
        '<tbody id="guards"></tbody>\n</table>\n'
        "<h2>Recent transitions</h2>\n"
        '<ol id="trail" reversed></ol>\n'
        f"<script>{_SCRIPT}</script>\n"
        "</body>\n</html>\n"
    )
    return page.encode("utf-8")
