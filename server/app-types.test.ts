// ServerApp keeps its routes' types: hono's typed client (`hc<ServerApp>`) over `app.request`, no
// engine and no network. The checks that matter run in `tsc` (expectTypeOf and @ts-expect-error):
// were the routes lost again (a discarded `.route()`), `client.v1` would not type-check, or a reply
// would be `any`, and `make lint` would fail here.
import { describe, expect, expectTypeOf, test } from "bun:test";
import { hc } from "hono/client";
import { openStore } from "../store/index.ts";
import { engineFreeApp } from "./fixtures.ts";
import type { ContainerView, ServerApp } from "./index.ts";

function makeClient() {
  const store = openStore(":memory:");
  const app = engineFreeApp({
    records: store.containers,
    nodeId: "n1",
    name: "types-test",
    resolveCaller: () => ({ id: "local", admin: true, operator: true }),
  });
  const client = hc<ServerApp>("http://node", {
    fetch: (input: string | URL | Request, init?: RequestInit) => app.request(input, init),
  });
  return { client, store };
}

describe("ServerApp for hc", () => {
  test("GET /v1/health: a typed reply", async () => {
    const { client, store } = makeClient();
    const res = await client.v1.health.$get();
    const body = await res.json();
    expectTypeOf(body).toEqualTypeOf<{ ok: true; nodeId: string; name: string; version: string }>();
    // @ts-expect-error not in the reply (were the reply `any`, this line would be an unused directive)
    body.missing;
    expect(body).toEqual({ ok: true, nodeId: "n1", name: "types-test", version: "test" });
    store.close();
  });

  test("GET /v1/containers: a typed reply", async () => {
    const { client, store } = makeClient();
    const res = await client.v1.containers.$get();
    const body = await res.json();
    expectTypeOf<(typeof body.containers)[number]["id"]>().toEqualTypeOf<ContainerView["id"]>();
    expectTypeOf<(typeof body.containers)[number]["state"]>().toEqualTypeOf<ContainerView["state"]>();
    // @ts-expect-error not in the reply
    body.missing;
    expect(body).toEqual({ containers: [] });
    store.close();
  });

  test("compat and parameterised routes are typed too", () => {
    const { client, store } = makeClient();
    expectTypeOf(client.server_info.$get).toBeFunction();
    type GetOne = Parameters<(typeof client.v1.containers)[":id"]["$get"]>[0];
    expectTypeOf<GetOne>().toExtend<{ param: { id: string } }>();
    // @ts-expect-error no such route
    client.v1.nope;
    store.close();
  });
});
