// The network as a picture: this node in the middle, every other node of the IP table around it, and the
// link this node measured to each, coloured by its latency. Plain SVG, drawn on the server.
import { html, raw } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";
import type { PeerView } from "../../p2p/index.ts";

/** A link's colour by latency: fast, slow, very slow, not measured. */
export function latencyColour(ms: number | undefined): string {
  if (ms === undefined) return "#98a2b3";
  if (ms < 20) return "#1a7f37";
  if (ms < 100) return "#b58100";
  return "#c62828";
}

const W = 560;
const H = 400;

/** The SVG of `peers` (this node is the one with `self`). */
export function networkGraph(peers: PeerView[]): HtmlEscapedString | Promise<HtmlEscapedString> {
  const self = peers.find((p) => p.self);
  const others = peers.filter((p) => !p.self);
  const cx = W / 2;
  const cy = H / 2;
  const r = Math.min(W, H) / 2 - 60;
  const at = (i: number) => {
    const a = (2 * Math.PI * i) / Math.max(1, others.length) - Math.PI / 2;
    return { x: cx + r * Math.cos(a), y: cy + r * Math.sin(a) };
  };
  const links = others.map((p, i) => {
    const { x, y } = at(i);
    const colour = latencyColour(p.latencyMs);
    const label = p.latencyMs === undefined ? "?" : `${p.latencyMs} ms`;
    return html`<line x1="${cx}" y1="${cy}" x2="${x.toFixed(1)}" y2="${y.toFixed(1)}" stroke="${colour}" stroke-width="3"${raw(p.state === "suspect" ? ' stroke-dasharray="6 4"' : "")}/>
<text x="${((cx + x) / 2).toFixed(1)}" y="${((cy + y) / 2 - 4).toFixed(1)}" text-anchor="middle" class="mono">${label}</text>`;
  });
  const nodes = others.map((p, i) => {
    const { x, y } = at(i);
    const fill = p.state === "alive" ? "#1a7f37" : "#b58100";
    return html`<g data-node="${p.id}"><circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="14" fill="${fill}"><title>${p.name} ${p.id} (${p.state}${p.reach === "relay" ? ", relayed" : ""})</title></circle>
<text x="${x.toFixed(1)}" y="${(y + 30).toFixed(1)}" text-anchor="middle">${p.name}${p.reach === "relay" ? " ⇄" : ""}</text></g>`;
  });
  return html`<svg class="net" viewBox="0 0 ${W} ${H}" role="img" aria-label="the network as this node sees it">
${links}
<g data-node="${self?.id ?? ""}"><circle cx="${cx}" cy="${cy}" r="20" fill="#2f6feb"><title>this node</title></circle>
<text x="${cx}" y="${cy + 38}" text-anchor="middle">${self?.name ?? "this node"} (this node)</text></g>
${nodes}
</svg>`;
}
