// The dashboard's stylesheet and script, as strings: part of the source, so `bun build --compile` embeds
// them in the binary (no CDN, works offline). No framework: a page is HTML from the server, and the script
// swaps in the sections the server pushes over server-sent events.

export const CSS = `
:root { --bg:#f6f7f9; --fg:#1d2330; --muted:#667085; --card:#fff; --line:#e3e6eb; --accent:#2f6feb;
  --ok:#1a7f37; --warn:#b58100; --bad:#c62828; --run:#2f6feb; --wait:#c5cad3; }
@media (prefers-color-scheme: dark) { :root { --bg:#12151b; --fg:#e6e9ef; --muted:#98a2b3; --card:#1b2029;
  --line:#2b313c; --wait:#3b4250; } }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; background:var(--bg); color:var(--fg); }
header { display:flex; flex-wrap:wrap; align-items:center; gap:.3rem 1rem; padding:.6rem 1rem; background:var(--card);
  border-bottom:1px solid var(--line); }
header strong { margin-right:.5rem; }
nav a { color:var(--muted); text-decoration:none; padding:.25rem .5rem; border-radius:6px; }
nav a.on, nav a:hover { color:var(--fg); background:var(--bg); }
main { padding:1rem; max-width:1200px; margin:0 auto; }
h1 { font-size:1.3rem; margin:.2rem 0 1rem; } h2 { font-size:1.05rem; margin:1.2rem 0 .5rem; }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(150px, 1fr)); gap:.7rem; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:.7rem .9rem; }
.card .n { font-size:1.6rem; font-weight:600; } .card .l { color:var(--muted); font-size:.85rem; }
.scroll { overflow-x:auto; background:var(--card); border:1px solid var(--line); border-radius:10px; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:.45rem .6rem; border-bottom:1px solid var(--line); white-space:nowrap; }
th { color:var(--muted); font-weight:500; font-size:.85rem; }
tr:last-child td { border-bottom:0; }
code, .mono { font-family:ui-monospace, SFMono-Regular, Menlo, monospace; font-size:.85em; }
.muted { color:var(--muted); }
.ok { color:var(--ok); } .warn { color:var(--warn); } .bad { color:var(--bad); }
dl { display:grid; grid-template-columns:max-content 1fr; gap:.3rem 1rem; margin:0; }
dt { color:var(--muted); } dd { margin:0; overflow-wrap:anywhere; }
form.inline { display:inline; }
button, input, select { font:inherit; padding:.3rem .6rem; border-radius:6px; border:1px solid var(--line);
  background:var(--card); color:var(--fg); }
button { cursor:pointer; } button.danger { color:var(--bad); border-color:var(--bad); }
pre.logs { background:#0d1117; color:#d1d7e0; padding:.7rem; border-radius:10px; height:50vh; overflow:auto;
  white-space:pre-wrap; margin:0; }
.grid { display:flex; flex-wrap:wrap; gap:3px; margin:.4rem 0; }
.grid i { width:16px; height:16px; border-radius:3px; background:var(--wait); display:inline-block; }
.grid i.running { background:var(--run); } .grid i.done { background:var(--ok); } .grid i.failed { background:var(--bad); }
.legend i { width:10px; height:10px; display:inline-block; border-radius:2px; margin:0 .2rem 0 .6rem; }
.legend i.pending { background:var(--wait); } .legend i.running { background:var(--run); }
.legend i.done { background:var(--ok); } .legend i.failed { background:var(--bad); }
.batch { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:.8rem; margin-bottom:1rem; }
.batch img { width:min(100%, 480px); border-radius:8px; margin-top:.5rem; image-rendering:pixelated; }
svg.net { width:100%; max-width:560px; height:auto; display:block; margin:auto; }
svg.net text { font-size:11px; fill:var(--fg); }
.live::before { content:"●"; color:var(--muted); margin-right:.3rem; }
.live.on::before { color:var(--ok); }
@media (max-width:600px) { main { padding:.6rem; } th, td { padding:.35rem .4rem; } }
`;

/**
 * The client: opens the page's event stream (`data-live` on body) and replaces each section the server
 * sends (`event: section`, `{id, html}`); a container page appends its log lines (`data-logs`).
 */
export const SCRIPT = `
(() => {
  const dot = document.getElementById("live");
  const live = document.body.dataset.live;
  if (live) {
    const es = new EventSource(live);
    es.addEventListener("open", () => dot && dot.classList.add("on"));
    es.addEventListener("error", () => dot && dot.classList.remove("on"));
    es.addEventListener("section", (e) => {
      const { id, html } = JSON.parse(e.data);
      const el = document.getElementById(id);
      if (el) el.innerHTML = html;
    });
  }
  const pre = document.querySelector("pre[data-logs]");
  if (pre) {
    const es = new EventSource(pre.dataset.logs);
    es.addEventListener("line", (e) => {
      const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(e.data + "\\n");
      if (stick) pre.scrollTop = pre.scrollHeight;
    });
    es.addEventListener("end", () => es.close());
  }
  // delegated: forms inside live sections are replaced as the server pushes them
  document.addEventListener("submit", (e) => {
    const f = e.target;
    if (f.dataset && f.dataset.confirm && !confirm(f.dataset.confirm)) e.preventDefault();
  });
})();
`;

/** The tab's icon: three linked nodes. */
export const ICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><path d="M8 24 16 8l8 16Z" fill="none" stroke="#2f6feb" stroke-width="2.5"/><circle cx="16" cy="8" r="5" fill="#2f6feb"/><circle cx="8" cy="24" r="5" fill="#1a7f37"/><circle cx="24" cy="24" r="5" fill="#1a7f37"/></svg>`;
