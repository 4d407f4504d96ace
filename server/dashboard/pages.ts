// The dashboard's pages as HTML sections. Each page is a few sections that are functions of the node's
// state; the page renders them once and its event stream sends each again when it changes.
import { html } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";
import type { PeerView } from "../../p2p/index.ts";
import type { BatchTaskRow } from "../../store/index.ts";
import type { ContainerView } from "../types.ts";
import { networkGraph } from "./graph.ts";
import type { BatchView, ClusterInfo, DashboardSource } from "./types.ts";

type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

/** The pages, in the navigation's order. */
export const PAGES = {
  overview: "Overview",
  nodes: "Nodes",
  containers: "Containers",
  batches: "Batches",
  clusters: "Clusters",
} as const;
export type PageName = keyof typeof PAGES | "container";

/** What a section needs besides the node's state. */
export interface SectionContext {
  source: DashboardSource;
  csrf: string;
  now: number;
  /** The container of a container page. */
  id?: string;
}

const short = (id: string) => id.slice(0, 12);

/** "3m 20s", "2h 5m", "expired". */
export function duration(ms: number): string {
  if (ms <= 0) return "expired";
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** A node's name from the IP table, else its id's first 12 characters. */
function nameOf(peers: PeerView[], id: string | undefined): string {
  if (!id) return "";
  return peers.find((p) => p.id === id)?.name ?? short(id);
}

/** The node's containers, or the engine's error (a page still renders while the engine is down). */
async function containersOf(ctx: SectionContext): Promise<{ list: ContainerView[]; error?: string }> {
  try {
    return { list: await ctx.source.containers() };
  } catch (err) {
    return { list: [], error: (err as Error).message };
  }
}

const csrfField = (csrf: string) => html`<input type="hidden" name="_csrf" value="${csrf}">`;

// ---- overview

async function overview(ctx: SectionContext): Promise<Record<string, Html>> {
  const [self, { list: containers }] = await Promise.all([ctx.source.self(), containersOf(ctx)]);
  const peers = ctx.source.peers().filter((p) => !p.self);
  const running = ctx.source.batches().filter((b) => b.tasks.some((t) => t.state !== "done"));
  const clusters = ctx.source.clusters();
  const alive = peers.filter((p) => p.state === "alive").length;
  return {
    self: html`<dl>
<dt>Node id</dt><dd class="mono" data-field="id">${self.id}</dd>
<dt>Name</dt><dd data-field="name">${self.name}</dd>
<dt>Version</dt><dd data-field="version">${self.version}</dd>
<dt>Address</dt><dd class="mono" data-field="address">${self.address}</dd>
<dt>Reached</dt><dd data-field="reach">${self.reach === "relay" ? `relayed (through ${self.relays.map(short).join(", ") || "no relay yet"})` : "direct"}</dd>
<dt>Engine</dt><dd data-field="engine" class="${self.engine.ok ? "ok" : "bad"}">${self.engine.detail}</dd>
<dt>Up for</dt><dd>${duration(ctx.now - self.startedAt)}</dd>
</dl>`,
    counts: html`<div class="cards">
<div class="card"><div class="n" data-count="peers">${peers.length}</div><div class="l">peers (${alive} alive)</div></div>
<div class="card"><div class="n" data-count="containers">${containers.length}</div><div class="l">containers (${containers.filter((c) => c.running).length} running)</div></div>
<div class="card"><div class="n" data-count="batches">${running.length}</div><div class="l">batches running</div></div>
<div class="card"><div class="n" data-count="clusters">${clusters.length}</div><div class="l">clusters</div></div>
</div>`,
    clusters: clusters.length
      ? html`<ul>${clusters.map(
          (c) =>
            html`<li><a href="/ui/clusters">${c.name}</a> <span class="muted">${c.hosting ? "hosted here" : `host ${nameOf(ctx.source.peers(), c.host)}`}, ${c.members.length} members</span></li>`,
        )}</ul>`
      : html`<p class="muted">In no cluster: only this node and <code>trusted</code> may use it.</p>`,
  };
}

// ---- nodes

function nodes(ctx: SectionContext): Record<string, Html> {
  const peers = ctx.source.peers();
  return {
    graph: networkGraph(peers),
    table: html`<div class="scroll"><table>
<thead><tr><th>Name</th><th>Id</th><th>Address</th><th>State</th><th>Latency</th><th>CPUs</th><th>Memory</th><th>GPUs</th><th>Free slots</th><th>Reach</th><th>Metadata</th></tr></thead>
<tbody>${peers.map(
      (p) => html`<tr data-node="${p.id}">
<td>${p.name}${p.self ? html` <span class="muted">(this node)</span>` : ""}</td>
<td class="mono">${short(p.id)}</td>
<td class="mono">${p.address ? `${p.address}:${p.port}` : "—"}</td>
<td class="${p.state === "alive" ? "ok" : "warn"}" data-field="state">${p.state}</td>
<td data-field="latency">${p.latencyMs === undefined ? "—" : `${p.latencyMs} ms`}</td>
<td data-field="cpus">${p.offer.cpus}</td>
<td data-field="memory">${p.offer.memoryMb} MiB</td>
<td data-field="gpus">${p.offer.gpus}</td>
<td data-field="slots">${p.offer.freeContainers}</td>
<td>${p.reach === "relay" ? `relayed (${p.relays.map(short).join(", ")})` : "direct"}</td>
<td>${p.metadata}</td>
</tr>`,
    )}</tbody></table></div>`,
  };
}

// ---- containers

function portsText(c: ContainerView): string {
  return c.ports.map((p) => `${p.external}→${p.internal}`).join(", ") || "—";
}

async function containersPage(ctx: SectionContext): Promise<Record<string, Html>> {
  const [{ list, error }, self] = [await containersOf(ctx), ctx.source.peers()];
  const selfId = self.find((p) => p.self)?.id;
  if (error) return { list: html`<p class="bad">The engine does not answer: ${error}</p>` };
  return {
    list: list.length
      ? html`<div class="scroll"><table>
<thead><tr><th>Name</th><th>Owner</th><th>Image</th><th>State</th><th>Ports</th><th>Lease left</th><th></th></tr></thead>
<tbody>${list.map(
          (c) => html`<tr data-container="${c.id}">
<td><a href="/ui/containers/${c.id}">${c.name}</a><br><span class="mono muted">${short(c.id)}</span></td>
<td data-field="owner">${c.owner === selfId ? "this node" : nameOf(self, c.owner)}</td>
<td class="mono">${c.image}</td>
<td class="${c.running ? "ok" : "muted"}" data-field="state">${c.state}</td>
<td class="mono">${portsText(c)}</td>
<td data-field="lease">${duration(Date.parse(c.expiresAt) - ctx.now)}</td>
<td><form class="inline" method="post" action="/ui/containers/${c.id}/remove" data-confirm="Remove ${c.name}?">${csrfField(ctx.csrf)}<button class="danger" type="submit">Remove</button></form></td>
</tr>`,
        )}</tbody></table></div>`
      : html`<p class="muted" data-empty="containers">No containers on this node.</p>`,
  };
}

async function containerPage(ctx: SectionContext): Promise<Record<string, Html>> {
  const c = (await containersOf(ctx)).list.find((x) => x.id === ctx.id);
  if (!c) return { detail: html`<p class="muted">This container is gone.</p>` };
  const peers = ctx.source.peers();
  return {
    detail: html`<dl>
<dt>Id</dt><dd class="mono">${c.id}</dd>
<dt>Owner</dt><dd>${nameOf(peers, c.owner)} <span class="mono muted">${short(c.owner)}</span></dd>
<dt>Image</dt><dd class="mono">${c.image}</dd>
<dt>State</dt><dd data-field="state">${c.state}${c.exitCode !== undefined ? ` (exit ${c.exitCode})` : ""}</dd>
<dt>Resources</dt><dd>${c.cpus} CPUs, ${c.memoryMb} MiB${c.gpu ? ", GPU" : ""}</dd>
<dt>Ports</dt><dd class="mono">${portsText(c)}</dd>
${c.ssh ? html`<dt>SSH</dt><dd class="mono">${c.ssh.command}</dd>` : ""}
<dt>Created</dt><dd>${c.createdAt}</dd>
<dt>Lease left</dt><dd data-field="lease">${duration(Date.parse(c.expiresAt) - ctx.now)} <span class="muted">(until ${c.expiresAt})</span></dd>
</dl>`,
  };
}

// ---- batches

/** Tasks per node and state, for the batch's table. */
export function perNode(tasks: BatchTaskRow[]): Map<string, Record<BatchTaskRow["state"], number>> {
  const out = new Map<string, Record<BatchTaskRow["state"], number>>();
  for (const t of tasks) {
    const key = t.node ?? "";
    const row = out.get(key) ?? { pending: 0, running: 0, done: 0, failed: 0 };
    row[t.state]++;
    out.set(key, row);
  }
  return out;
}

function batchHtml(b: BatchView, peers: PeerView[]): Html {
  const count = (s: BatchTaskRow["state"]) => b.tasks.filter((t) => t.state === s).length;
  const durations = b.tasks
    .flatMap((t) => (t.durationMs === undefined ? [] : [t.durationMs]))
    .sort((x, y) => x - y);
  const median = durations[Math.floor(durations.length / 2)];
  const failed = b.tasks.filter((t) => t.state === "failed" || t.error);
  const finished = count("pending") + count("running") === 0;
  return html`<section class="batch" data-batch="${b.id}">
<h2>${finished ? "Finished" : "Running"} batch <span class="mono">${b.id.slice(0, 8)}</span> <span class="muted">${new Date(b.createdAt).toISOString()}</span></h2>
<p class="mono muted" title="${b.command}">${b.image} ${b.command.length > 120 ? `${b.command.slice(0, 119)}…` : b.command} → ${b.outDir}</p>
<p class="legend">${b.tasks.length} tasks:
<i class="pending"></i>queued <b data-count="pending">${count("pending")}</b>
<i class="running"></i>running <b data-count="running">${count("running")}</b>
<i class="done"></i>done <b data-count="done">${count("done")}</b>
<i class="failed"></i>failed <b data-count="failed">${count("failed")}</b>
${durations.length ? html` · median ${(Number(median) / 1000).toFixed(1)} s, longest ${(Number(durations.at(-1)) / 1000).toFixed(1)} s` : ""}</p>
<div class="grid">${b.tasks.map(
    (t) =>
      html`<i class="${t.state}" data-task="${t.index}" data-state="${t.state}" title="task ${t.index}: ${t.state}${t.node ? ` on ${nameOf(peers, t.node)}` : ""}${t.durationMs !== undefined ? `, ${(t.durationMs / 1000).toFixed(1)} s` : ""}${t.exitCode !== undefined ? `, exit ${t.exitCode}` : ""}${t.attempts > 1 ? `, ${t.attempts} attempts` : ""}"></i>`,
  )}</div>
<div class="scroll"><table><thead><tr><th>Node</th><th>Running</th><th>Done</th><th>Failed</th></tr></thead><tbody>
${[...perNode(b.tasks)]
  .filter(([node]) => node)
  .map(
    ([node, n]) =>
      html`<tr data-batch-node="${node}"><td>${nameOf(peers, node)}</td><td>${n.running}</td><td>${n.done}</td><td>${n.failed}</td></tr>`,
  )}
</tbody></table></div>
${failed.length ? html`<h2>Errors</h2><ul>${failed.slice(0, 20).map((t) => html`<li data-error="${t.index}">task ${t.index}${t.node ? ` on ${nameOf(peers, t.node)}` : ""}: ${t.error ?? `exit ${t.exitCode}`}</li>`)}</ul>` : ""}
${finished ? html`<p class="muted">Results: <code>${b.outDir}</code></p>` : ""}
${b.imagePath && finished ? html`<img src="/ui/batches/${b.id}/image.png" alt="the Mandelbrot set, assembled from ${b.tasks.length} tiles" data-image="${b.id}">` : ""}
</section>`;
}

function batches(ctx: SectionContext): Record<string, Html> {
  const list = ctx.source.batches().slice(0, 20);
  const peers = ctx.source.peers();
  return {
    batches: list.length
      ? html`${list.map((b) => batchHtml(b, peers))}`
      : html`<p class="muted">No batches yet: <code>p2prc batch job.json --out dir</code> or <code>p2prc demo mandelbrot</code>.</p>`,
  };
}

// ---- clusters

function clusterHtml(c: ClusterInfo, peers: PeerView[], csrf: string): Html {
  return html`<section class="batch" data-cluster="${c.name}">
<h2>${c.name} <span class="muted">version ${c.version}, ${c.hosting ? "hosted by this node" : `host ${nameOf(peers, c.host)}`}</span></h2>
<div class="scroll"><table><thead><tr><th>Member</th><th>Id</th><th>Label</th><th>Role</th><th></th></tr></thead><tbody>
<tr data-member="${c.host}"><td>${nameOf(peers, c.host)}</td><td class="mono">${short(c.host)}</td><td></td><td>host</td><td></td></tr>
${c.members
  .filter((m) => m.id !== c.host)
  .map(
    (
      m,
    ) => html`<tr data-member="${m.id}"><td>${nameOf(peers, m.id)}</td><td class="mono">${short(m.id)}</td><td>${m.label}</td><td data-field="role">${m.role}</td>
<td>${
      c.hosting
        ? html`<form class="inline" method="post" action="/ui/clusters/${c.name}/remove" data-confirm="Remove ${nameOf(peers, m.id)} from ${c.name}?">${csrfField(csrf)}<input type="hidden" name="id" value="${m.id}"><button class="danger" type="submit">Remove</button></form>`
        : ""
    }</td></tr>`,
  )}
</tbody></table></div></section>`;
}

function clusters(ctx: SectionContext): Record<string, Html> {
  const list = ctx.source.clusters();
  const peers = ctx.source.peers();
  return {
    clusters: list.length
      ? html`${list.map((c) => clusterHtml(c, peers, ctx.csrf))}`
      : html`<p class="muted">This node is in no cluster. <code>p2prc --host-cluster &lt;name&gt;</code> hosts one.</p>`,
  };
}

/** The add-member form of the clusters this node hosts (outside the live section: typing is not replaced). */
export function addMemberForm(ctx: SectionContext): Html {
  const hosted = ctx.source.clusters().filter((c) => c.hosting);
  if (!hosted.length) return html``;
  return html`<h2>Add a member</h2>
<form method="post" action="/ui/clusters/add" class="card" id="add-member">${csrfField(ctx.csrf)}
<select name="cluster" aria-label="cluster">${hosted.map((c) => html`<option>${c.name}</option>`)}</select>
<input name="id" placeholder="node id (p2prc --whoami)" size="40" required pattern="[0-9a-f]{64}" aria-label="node id">
<input name="label" placeholder="label" size="12" aria-label="label">
<select name="role" aria-label="role"><option>member</option><option>admin</option></select>
<button type="submit">Add</button></form>`;
}

/** The renewal form of a container page. */
export function leaseForm(ctx: SectionContext): Html {
  return html`<form method="post" action="/ui/containers/${ctx.id ?? ""}/lease" id="lease">${csrfField(ctx.csrf)}
<label>Renew the lease for <input name="ttl" type="number" min="60" value="3600" size="7"> seconds</label>
<button type="submit">Renew</button></form>
<form method="post" action="/ui/containers/${ctx.id ?? ""}/remove" data-confirm="Remove this container?" id="remove">${csrfField(ctx.csrf)}<button class="danger" type="submit">Remove the container</button></form>`;
}

const RENDER: Record<
  PageName,
  (ctx: SectionContext) => Record<string, Html> | Promise<Record<string, Html>>
> = {
  overview,
  nodes,
  containers: containersPage,
  container: containerPage,
  batches,
  clusters,
};

/** A page's sections, by element id. */
export async function sections(page: PageName, ctx: SectionContext): Promise<Record<string, Html>> {
  return RENDER[page](ctx);
}
