import { networkInterfaces } from "node:os";
import type { Command } from "../context.ts";
import { toJson } from "../io.ts";

/** `--ni` / `--NetworkInterfaces`: `(idx) <iface> : <cidr>` lines as P2PRC printed them. */
export const networkInterfacesCommand: Command = async ({ io, json }) => {
  const rows = Object.entries(networkInterfaces()).flatMap(([name, addrs]) =>
    (addrs ?? []).map((a) => ({
      name,
      address: a.address,
      cidr: a.cidr,
      family: a.family,
      internal: a.internal,
    })),
  );
  if (json) return io.out(toJson(rows));
  rows.forEach((r, i) => {
    io.out(`(${i}) ${r.name} : ${r.cidr ?? r.address}`);
  });
};
