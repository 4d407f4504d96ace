// The lower modules abstractions loads on first use: the lazy boundaries of Docs/Architecture.md ("What
// loads when"), each measured side by side (two builds, interleaved runs). A command that needs none of
// them (`--vc`, `--dc`) loads none; cli/actions.test.ts checks what `--vc` and `--ls` load.

/** p2p/ (gossip, the relay, hono's routes): loading it with abstractions costs `--vc` 5.4 ms of ~41. */
export const p2p = () => import("../p2p/index.ts");

/** client/ (hono's client, tar, PNG): +9–17 ms on `--vc` and `--ls` when loaded with abstractions. */
export const client = () => import("../client/index.ts");

/** server/ (dockerode, the routes and their schemas): only a node that serves, `--us` and doctor need it. */
export const server = () => import("../server/index.ts");

/** plugins/ (tar, hashes, the plugin routes): the plugin commands and a serving node load it. */
export const plugins = () => import("../plugins/index.ts");
/** server/dashboard (the dashboard, prom-client): only a node that serves loads it, never a command that does not. */
export const ui = async () => (await server()).loadDashboard();
