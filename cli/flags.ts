import type { ArgsDef } from "citty";

/**
 * Every root flag. P2PRC's names (and their short aliases) stay working as aliases of the new names.
 * `pending` names the issue that builds a flag; until then it answers "not available yet" (exit 2).
 */
interface FlagDef {
  type: "boolean" | "string";
  alias?: string[];
  description: string;
  valueHint?: string;
  pending?: string;
}

export const FLAGS = {
  // actions
  "as-server": {
    type: "boolean",
    alias: ["s", "Server"],
    description: "Run this node as a server in the foreground",
  },
  "set-default-config": {
    type: "boolean",
    alias: ["dc", "SetDefaultConfig"],
    description: "Create or complete config.json, node keys and state.db (idempotent)",
  },
  "view-config": {
    type: "boolean",
    alias: ["vc", "ViewConfig"],
    description: "Print the effective config as JSON",
  },
  whoami: { type: "boolean", description: "Print this node's id (derived from its Ed25519 key)" },
  doctor: { type: "boolean", description: "Check the container engine: reachable, version, images" },
  "network-interfaces": {
    type: "boolean",
    alias: ["ni", "NetworkInterfaces"],
    description: "List this machine's network interfaces",
  },
  "list-servers": {
    type: "boolean",
    alias: ["ls", "ListServers"],
    description: "Print the IP table sorted by latency",
  },
  "update-server-list": {
    type: "boolean",
    alias: ["us", "UpdateServerList"],
    description: "Exchange with peers now, then print the IP table",
  },
  "add-server": {
    type: "string",
    alias: ["as", "AddServer"],
    valueHint: "host:port",
    description: "Add a node to the IP table",
  },
  "add-root-node": {
    type: "boolean",
    alias: ["arn", "AddRootNode"],
    description: "Add a root node (with --ip and -p) without wiping the table",
  },
  "add-metadata": {
    type: "string",
    alias: ["amd", "AddMetaData"],
    valueHint: "text",
    description: "Set this node's metadata and spread it",
  },
  "exec-container": {
    type: "string",
    alias: ["touch", "CreateVM"],
    valueHint: "node",
    description: "Create a container on a node (id, name, host:port or auto)",
  },
  "remove-vm": {
    type: "string",
    alias: ["rm", "RemoveVM"],
    valueHint: "node",
    description: "Remove container --id from a node",
  },
  "view-images": {
    type: "string",
    alias: ["vi", "ViewImages"],
    valueHint: "node",
    description: "List the images a node offers",
  },
  specs: {
    type: "string",
    alias: ["Specification"],
    valueHint: "node",
    description: "Print a node's specs",
  },
  "tracked-containers": {
    type: "boolean",
    alias: ["tc", "TrackedContainers"],
    description: "List the containers this client created",
  },
  "create-group": {
    type: "boolean",
    alias: ["cgroup", "CreateGroup"],
    description: "Create a container group",
  },
  group: {
    type: "string",
    alias: ["Group"],
    valueHint: "gid",
    description: "Show a group; with --id add a container; with --rmcgroup remove it",
  },
  "remove-group": {
    type: "string",
    alias: ["rmgroup", "RemoveGroup"],
    valueHint: "gid",
    description: "Remove a group",
  },
  groups: { type: "boolean", alias: ["Groups"], description: "List container groups" },
  "map-port": {
    type: "string",
    alias: ["mp", "MAPPort"],
    valueHint: "port",
    description: "Expose a local port through a relay peer",
    pending: "NAT relay",
  },
  "view-plugins": {
    type: "boolean",
    alias: ["vp", "ViewPlugins"],
    description: "List installed plugins",
    pending: "plugins",
  },
  "execute-plugin": {
    type: "string",
    alias: ["plugin", "ExecutePlugin"],
    valueHint: "name",
    description: "Run a plugin against container or group --id",
    pending: "plugins",
  },
  "pull-plugin": {
    type: "string",
    alias: ["pp", "PullPlugin"],
    valueHint: "url",
    description: "Install a plugin",
    pending: "plugins",
  },
  "remove-plugin": {
    type: "string",
    alias: ["rp", "RemovePlugin"],
    valueHint: "name",
    description: "Remove a plugin",
    pending: "plugins",
  },
  "host-cluster": {
    type: "string",
    valueHint: "name",
    description: "Host a shared cluster (with --users id,…); writes its signed document",
  },
  "cluster-add": {
    type: "string",
    valueHint: "id[=label]",
    description: "Add a member to a cluster this node hosts (--role admin, --cluster name)",
  },
  "cluster-remove": {
    type: "string",
    valueHint: "id",
    description: "Remove a member from a cluster this node hosts; it loses access everywhere",
  },
  join: {
    type: "string",
    valueHint: "file|host:port",
    description: "Join a cluster from its document or from a node that holds it",
  },
  clusters: { type: "boolean", description: "List the clusters this node hosts or joined" },
  "leave-cluster": {
    type: "string",
    valueHint: "name",
    description: "Leave a cluster this node joined: its members lose access here",
  },
  // modifiers
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
  id: { type: "string", alias: ["ID"], description: "Container or group id (with --rm, --group, --plugin)" },
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
  "ssh-key": { type: "string", valueHint: "file", description: "Public key for SSH into the container" },
  "remove-container-group": {
    type: "boolean",
    alias: ["rmcgroup", "RemoveContainerGroup"],
    description: "With --group and --id: remove the container from the group",
  },
  ip: { type: "string", alias: ["IPAddress"], description: "Host of the root node (--arn)" },
  udp: { type: "boolean", description: "Map a UDP port (--mp)" },
  "remote-address": {
    type: "string",
    alias: ["ra", "RemoteAddress"],
    description: "Ask this remote node to map the port (--mp)",
  },
  "domain-name": {
    type: "string",
    alias: ["dn", "DomainName"],
    description: "Domain for the mapped port (--mp)",
  },
  // global
  "config-dir": { type: "string", valueHint: "dir", description: "Node home directory (overrides $P2PRC)" },
  port: { type: "string", description: "Server port (overrides serverPort)" },
  host: { type: "string", description: "Server bind address (overrides serverHost)" },
  json: { type: "boolean", description: "Machine-readable output" },
  "log-level": { type: "string", valueHint: "level", description: "silent, error, warn, info or debug" },
  debug: { type: "boolean", description: "Show stack traces on errors" },
  version: { type: "boolean", alias: ["v"], description: "Print the version" },
  help: { type: "boolean", alias: ["h"], description: "Show this help" },
} satisfies Record<string, FlagDef>;

export type FlagName = keyof typeof FLAGS;

/** Action flags in the order they run when several are given (as P2PRC's action.go); the server runs last. */
export const ACTION_ORDER: FlagName[] = [
  "set-default-config",
  "update-server-list",
  "list-servers",
  "add-server",
  "view-images",
  "remove-vm",
  "exec-container",
  "specs",
  "network-interfaces",
  "view-plugins",
  "tracked-containers",
  "execute-plugin",
  "create-group",
  "group",
  "remove-group",
  "groups",
  "pull-plugin",
  "remove-plugin",
  "add-metadata",
  "map-port",
  "add-root-node",
  "host-cluster",
  "cluster-add",
  "cluster-remove",
  "join",
  "leave-cluster",
  "clusters",
  "view-config",
  "whoami",
  "doctor",
  "as-server",
];

/** citty's args definition, with pending flags marked in their help line. */
export function cittyArgs(only?: Iterable<FlagName>): ArgsDef {
  const out: ArgsDef = {};
  const names = only ? [...only] : (Object.keys(FLAGS) as FlagName[]);
  for (const [name, def] of names.map((n) => [n, FLAGS[n]] as [FlagName, FlagDef])) {
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
  for (const [name, def] of Object.entries(FLAGS) as [FlagName, FlagDef][]) {
    for (const spelling of [name, camel(name), ...(def.alias ?? [])]) map.set(spelling, name);
  }
  return map;
}
