import { expect, test } from "bun:test";
import { join } from "node:path";

// In a fresh process: whether prom-client is loaded is a fact of the whole process's module cache.
test("prom-client loads at the first scrape, not at start; what was fed before is all in it", async () => {
  const script = `
    const { NodeMetrics } = await import(${JSON.stringify(join(import.meta.dir, "metrics.ts"))});
    const loaded = () => Object.keys(require.cache).some((k) => k.includes("/prom-client/"));
    const m = new NodeMetrics({
      version: "t", peerStates: () => ["alive"], containerStates: async () => [], batchTaskStates: () => [],
      gossip: () => ({ rounds: 3, bytesSent: 0, bytesReceived: 0 }),
    });
    m.request({ method: "GET", route: "/v1/health", status: 200, seconds: 0.003 });
    m.request({ method: "GET", route: "/v1/health", status: 200, seconds: 0.2 });
    m.containerStarted(0.7);
    m.engineError("create");
    const before = loaded();
    const { body } = await m.text();
    m.request({ method: "GET", route: "/v1/health", status: 200, seconds: 0.003 });
    const again = (await m.text()).body;
    console.log(JSON.stringify({ before, after: loaded(), body, again }));
  `;
  const proc = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
  const [out, err] = [await new Response(proc.stdout).text(), await new Response(proc.stderr).text()];
  expect(await proc.exited, err).toBe(0);
  const r = JSON.parse(out) as { before: boolean; after: boolean; body: string; again: string };
  expect(r.before).toBe(false);
  expect(r.after).toBe(true);
  expect(r.body).toContain('p2prc_http_requests_total{method="GET",route="/v1/health",status="200"} 2');
  expect(r.body).toContain('p2prc_http_request_duration_seconds_bucket{le="0.005",route="/v1/health"} 1');
  expect(r.body).toContain('p2prc_http_request_duration_seconds_bucket{le="0.25",route="/v1/health"} 2');
  expect(r.body).toContain('p2prc_http_request_duration_seconds_count{route="/v1/health"} 2');
  expect(r.body).toContain("p2prc_container_start_duration_seconds_count 1");
  expect(r.body).toContain('p2prc_engine_errors_total{operation="create"} 1');
  expect(r.body).toContain("p2prc_gossip_rounds_total 3");
  expect(r.body).toContain("# TYPE p2prc_http_request_duration_seconds histogram");
  expect(r.again).toContain('p2prc_http_requests_total{method="GET",route="/v1/health",status="200"} 3');
});
