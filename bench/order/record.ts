// Records which bytecode the binary's two most common starts use, for `bun build --bytecode-order`:
// the build places that bytecode together at the front of the executable's module data, so those
// starts touch fewer pages (less resident memory, faster start). Run by `make bytecode-order`.
//
//   server.order  `p2prc --as-server` with one trusted peer gossiping over TLS for a few rounds
//   ls.order      `p2prc --ls` on that node's home (a table with two nodes)
//
// Any build made with --bytecode can record (a profile from an older build still applies); functions
// added since land after the recorded ones, so re-record after large changes, not after every edit.
import { chmodSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cleanEnv } from "../lib.ts";

const ROOT = join(import.meta.dir, "..", "..");
const P2PRC = process.argv[2] ?? join(ROOT, "p2prc");
const OUT = import.meta.dir;
const work = mkdtempSync(join(tmpdir(), "p2prc-order-"));

/** lib's clean env, and no recorder setting of the caller's: each run below names its own file. */
function env(extra: Record<string, string>): Record<string, string> {
  const { BUN_BYTECODE_ORDER_OUT: _, ...clean } = cleanEnv();
  return { ...clean, ...extra };
}

function dc(home: string): string {
  const r = Bun.spawnSync([P2PRC, "--dc", "--json"], { env: env({ P2PRC: home }), stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`p2prc --dc failed: ${r.stderr.toString().trim()}`);
  return (JSON.parse(r.stdout.toString()) as { nodeId: string }).nodeId;
}

/** Moves a recorded file next to this script, readable by all (Bun writes it 0600). */
function keep(file: string, name: string): void {
  chmodSync(file, 0o644);
  renameSync(file, join(OUT, name));
}

async function healthy(home: string, port: number): Promise<void> {
  const ca = readFileSync(join(home, "identity", "tls.crt"), "utf8");
  for (let i = 0; i < 100; i++) {
    try {
      const res = await fetch(`https://127.0.0.1:${port}/v1/health`, {
        tls: { ca, checkServerIdentity: () => undefined },
        signal: AbortSignal.timeout(1000),
      });
      if (res.ok) return;
    } catch {
      // not up yet
    }
    await Bun.sleep(100);
  }
  throw new Error(`node on port ${port} did not answer /v1/health`);
}

async function main(): Promise<void> {
  if (!existsSync(P2PRC)) throw new Error(`${P2PRC} is missing (make build)`);
  const [homeA, homeB] = [join(work, "a"), join(work, "b")];
  const [idA, idB] = [dc(homeA), dc(homeB)];
  const portA = 20000 + Math.floor(Math.random() * 20000);
  const serverOrder = join(work, "server.order");
  const a = Bun.spawn([P2PRC, "--as-server"], {
    env: env({
      P2PRC: homeA,
      P2PRC_SERVER_HOST: "127.0.0.1",
      P2PRC_SERVER_PORT: String(portA),
      P2PRC_TRUSTED: idB,
      BUN_BYTECODE_ORDER_OUT: serverOrder,
    }),
    stdout: "ignore",
    stderr: "ignore",
  });
  await healthy(homeA, portA);
  const b = Bun.spawn([P2PRC, "--as-server"], {
    env: env({
      P2PRC: homeB,
      P2PRC_SERVER_HOST: "127.0.0.1",
      P2PRC_SERVER_PORT: String(portA + 1),
      P2PRC_TRUSTED: idA,
      P2PRC_BOOTSTRAP: `127.0.0.1:${portA}`,
    }),
    stdout: "ignore",
    stderr: "ignore",
  });
  try {
    await Bun.sleep(8000); // a few gossip rounds and a reconcile with the engine
    const lsOrder = join(work, "ls.order");
    const ls = Bun.spawnSync([P2PRC, "--ls"], {
      env: env({ P2PRC: homeA, BUN_BYTECODE_ORDER_OUT: lsOrder }),
    });
    const rows = ls.stdout.toString().trim().split("\n").length - 1;
    if (ls.exitCode !== 0 || rows < 2) throw new Error(`p2prc --ls listed ${rows} nodes (want 2)`);
    keep(lsOrder, "ls.order");
  } finally {
    b.kill("SIGTERM");
    a.kill("SIGTERM");
    await Promise.all([a.exited, b.exited]);
  }
  if (!existsSync(serverOrder)) throw new Error("the server wrote no order file");
  keep(serverOrder, "server.order");
  console.log(`recorded ${OUT}/server.order and ${OUT}/ls.order from ${P2PRC}`);
}

try {
  await main();
} finally {
  rmSync(work, { recursive: true, force: true });
}
