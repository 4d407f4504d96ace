// The page shell (header, navigation, the live indicator) and each page's arrangement of its sections.
import { html, raw } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";
import { addMemberForm, leaseForm, PAGES, type PageName, type SectionContext } from "./pages.ts";

type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

/** One section's element, filled with its first rendering. */
const slot = (id: string, body: Html | undefined) => html`<div id="${id}">${body ?? ""}</div>`;

/** The body of each page: headings and the sections in order. */
function body(page: PageName, s: Record<string, Html>, ctx: SectionContext): Html {
  switch (page) {
    case "overview":
      return html`<h1>Overview</h1>${slot("counts", s.counts)}<h2>This node</h2><div class="card">${slot("self", s.self)}</div><h2>Clusters</h2>${slot("clusters", s.clusters)}`;
    case "nodes":
      return html`<h1>Nodes</h1><div class="card">${slot("graph", s.graph)}<p class="muted">Links: this node's measured latency — <span class="ok">under 20 ms</span>, <span class="warn">under 100 ms</span>, <span class="bad">slower</span>; dashed: suspect.</p></div><h2>IP table</h2>${slot("table", s.table)}`;
    case "containers":
      return html`<h1>Containers</h1>${slot("list", s.list)}`;
    case "container":
      return html`<h1>Container <span class="mono">${(ctx.id ?? "").slice(0, 12)}</span></h1><p><a href="/ui/containers">← all containers</a></p><div class="card">${slot("detail", s.detail)}</div>
<h2>Actions</h2><div class="card">${leaseForm(ctx)}</div>
<h2>Logs</h2><pre class="logs" id="logs" data-logs="/ui/containers/${ctx.id ?? ""}/logs"></pre>`;
    case "batches":
      return html`<h1>Batches</h1>${slot("batches", s.batches)}`;
    case "clusters":
      return html`<h1>Clusters</h1>${slot("clusters", s.clusters)}${addMemberForm(ctx)}`;
  }
}

/** A whole page: the shell around the page's sections; `live` is its event stream. */
export function page(
  name: PageName,
  s: Record<string, Html>,
  ctx: SectionContext,
  o: { live: string; nodeName: string },
): Html {
  const nav = (Object.entries(PAGES) as [PageName, string][]).map(
    ([key, label]) =>
      html`<a href="/ui${key === "overview" ? "" : `/${key}`}" class="${key === name || (name === "container" && key === "containers") ? "on" : ""}">${label}</a>`,
  );
  const title = name === "container" ? "Container" : PAGES[name];
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · ${o.nodeName} · p2prc</title><link rel="stylesheet" href="/ui/assets/app.css"><link rel="icon" href="/ui/assets/icon.svg"></head>
<body data-live="${o.live}" data-page="${name}">
<header><strong>p2prc</strong><span class="muted">${o.nodeName}</span><nav>${nav}</nav><span id="live" class="live muted" title="live updates">live</span></header>
<main>${body(name, s, ctx)}</main>
<script src="/ui/assets/app.js"></script>
</body></html>`;
}

/** The page a refused or spent login link gets. */
export function refusedPage(message: string): Html {
  return html`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>p2prc</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>Not logged in</h1><p>${message}</p><p>Run ${raw("<code>p2prc ui</code>")} on the node's machine for a new login link.</p></main></body></html>`;
}
