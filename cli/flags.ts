import type { ArgsDef } from "citty";
import { ACTIONS, type ActionDef, type ActionName, type FlagDef } from "./actions.ts";

/** Flags that give an action its details, in the order the help lists them. */
export const MODIFIERS = {
  id: {
    type: "string",
    alias: ["ID"],
    description: "Container or group id (with --rm, --group, --plugin, --mp)",
  },
  ports: {
    type: "string",
    alias: ["p", "Ports"],
    description: "Ports to publish (--touch); root node port (--arn)",
  },
  gpu: { type: "boolean", alias: ["GPU"], description: "Give the container the node's GPUs" },
  image: { type: "string", alias: ["bi", "BaseImage"], description: "Container image" },
  name: { type: "string", alias: ["cn", "ContainerName"], description: "Container name" },
  cpus: { type: "string", description: "CPUs for the container" },
  memory: { type: "string", valueHint: "MiB", description: "Memory for the container in MiB" },
  ttl: { type: "string", valueHint: "seconds", description: "Container lease; removed after it" },
  "ssh-key": {
    type: "string",
    valueHint: "file|none",
    description: "Public key for SSH into the container (default ~/.ssh/id_*.pub; none: no SSH)",
  },
  env: {
    type: "string",
    alias: ["e"],
    valueHint: "NAME=value",
    repeat: true,
    description: "Environment variable of the container (--touch) or plugin option (--plugin); repeatable",
  },
  publish: {
    type: "string",
    valueHint: "port,…",
    description: "Container ports to publish on free host ports (--touch)",
  },
  "remove-container-group": {
    type: "boolean",
    alias: ["rmcgroup", "RemoveContainerGroup"],
    description: "With --group and --id: remove the container from the group",
  },
  ip: { type: "string", alias: ["IPAddress"], description: "Host of the root node (--arn)" },
  udp: { type: "boolean", description: "Map a UDP port (--mp; not supported: TCP only)" },
  "remote-address": {
    type: "string",
    alias: ["ra", "RemoteAddress"],
    valueHint: "node",
    description: "The relay to map the port through (--mp)",
  },
  public: {
    type: "boolean",
    description: "Map the port for anyone at a public port of the relay, not only members (--mp)",
  },
  "domain-name": {
    type: "string",
    alias: ["dn", "DomainName"],
    description: "Route the mapped port by this HTTP Host on the relay (--mp; implies --public)",
  },
  users: {
    type: "string",
    valueHint: "id[=label],…",
    description: "Members of a new cluster (--host-cluster)",
  },
  cluster: {
    type: "string",
    valueHint: "name",
    description: "Which cluster (--cluster-add, --cluster-remove, --join)",
  },
  role: { type: "string", valueHint: "member|admin", description: "Role of added members (default member)" },
} as const satisfies Record<string, FlagDef>;

/** Flags that work with any action, in the order the help lists them. */
export const GLOBAL_FLAGS = {
  "config-dir": { type: "string", valueHint: "dir", description: "Node home directory (overrides $P2PRC)" },
  port: { type: "string", description: "Server port (overrides serverPort)" },
  host: { type: "string", description: "Server bind address (overrides serverHost)" },
  json: { type: "boolean", description: "Machine-readable output" },
  "log-level": { type: "string", valueHint: "level", description: "silent, error, warn, info or debug" },
  debug: { type: "boolean", description: "Show stack traces on errors" },
  version: { type: "boolean", alias: ["v"], description: "Print the version" },
  help: { type: "boolean", alias: ["h"], description: "Show this help" },
} as const satisfies Record<string, FlagDef>;

export type FlagName = ActionName | keyof typeof MODIFIERS | keyof typeof GLOBAL_FLAGS;

/** A root flag's definition; an action's also has `run` or `pending`. */
type AnyFlagDef = FlagDef & { pending?: string };

/**
 * Every root flag by canonical name, derived from ACTIONS, MODIFIERS and GLOBAL_FLAGS. P2PRC's names (and
 * their short aliases) stay working as aliases of the new names.
 */
export const FLAGS: Record<FlagName, AnyFlagDef> = {
  ...(Object.fromEntries(ACTIONS.map((a) => [a.name, a])) as Record<ActionName, ActionDef>),
  ...MODIFIERS,
  ...GLOBAL_FLAGS,
};

/** citty's args definition, with pending flags marked in their help line. */
export function cittyArgs(only?: Iterable<FlagName>): ArgsDef {
  const out: ArgsDef = {};
  const names = only ? [...only] : (Object.keys(FLAGS) as FlagName[]);
  for (const name of names) {
    const def = FLAGS[name];
    out[name] = {
      type: def.type,
      alias: def.alias ? [...def.alias] : undefined,
      valueHint: def.valueHint,
      description: def.pending ? `${def.description} (not available yet)` : def.description,
    };
  }
  return out;
}

/** Every spelling a flag accepts → its canonical name. */
export function flagSpellings(): Map<string, FlagName> {
  const map = new Map<string, FlagName>();
  const camel = (s: string) => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  for (const [name, def] of Object.entries(FLAGS) as [FlagName, AnyFlagDef][]) {
    for (const spelling of [name, camel(name), ...(def.alias ?? [])]) map.set(spelling, name);
  }
  return map;
}
