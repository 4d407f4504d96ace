import { DEFAULT_PORT, tryParseAddress, type Z, type z, zod } from "../core/index.ts";

const hostPort = (z: Z) =>
  z
    .string()
    .check(z.refine((s) => s === s.trim() && tryParseAddress(s) !== undefined, "host:port (port 1-65535)"));

const imageRef = (z: Z) =>
  z.string().check(z.regex(/^[a-z0-9][a-z0-9._\-/:@]*$/, "image reference"), z.maxLength(255));

/**
 * Every config field, its schema, and the words used in error messages and docs for what it allows.
 * Field names are camelCase in config.json; the env override is P2PRC_<UPPER_SNAKE>.
 */
export const CONFIG_FIELDS = {
  machineName: {
    schema: (z: Z) => z.string().check(z.regex(/^[A-Za-z0-9._-]{1,64}$/)),
    allowed: "1-64 letters, digits, '.', '_' or '-'",
    doc: "Human-readable node name shown in peers' tables.",
  },
  serverHost: {
    schema: (z: Z) => z.string().check(z.regex(/^[A-Za-z0-9.:-]{1,253}$/)),
    allowed: "an IP address or host name to listen on",
    doc: "Address the HTTP server binds to.",
  },
  serverPort: {
    schema: (z: Z) => z.int().check(z.minimum(1), z.maximum(65535)),
    allowed: "an integer from 1 to 65535",
    doc: "TCP port of the node's HTTP API.",
  },
  publishHost: {
    schema: (z: Z) => z.string().check(z.regex(/^([A-Za-z0-9.:-]{1,253})?$/)),
    allowed: "empty, or an IP address of this host",
    doc: "Address containers' published ports bind to; empty = serverHost (all interfaces when that is 0.0.0.0 or ::).",
  },
  advertiseAddress: {
    schema: (z: Z) =>
      z.string().check(
        z.maxLength(260),
        z.refine(
          (s) => s === "" || (s === s.trim() && tryParseAddress(s, DEFAULT_PORT) !== undefined),
          "host or host:port",
        ),
      ),
    allowed: "empty, or the host (or host:port) peers should use to reach this node",
    doc: "Address peers should use to reach this node; empty = learned from peers.",
  },
  bootstrap: {
    schema: (z: Z) => z.array(hostPort(z)).check(z.maxLength(64)),
    allowed: "a list of host:port (env: comma-separated)",
    doc: "Nodes contacted first to join a network (P2PRC's root nodes).",
  },
  behindNat: {
    schema: (z: Z) => z.enum(["auto", "true", "false"]),
    allowed: '"auto", "true" or "false"',
    doc: 'Whether members can dial this node: "auto" finds out (members dial its advertised address back), "true" says they cannot (reached through a relay), "false" says they can.',
  },
  relays: {
    schema: (z: Z) => z.array(hostPort(z)).check(z.maxLength(16)),
    allowed: "a list of host:port of relays (env: comma-separated)",
    doc: "Relays this node keeps a tunnel through, in order of preference (it fails over to the next); empty = while this node finds itself relayed (behindNat), the relays members offer in the IP table, nearest first.",
  },
  relayPort: {
    schema: (z: Z) => z.int().check(z.minimum(0), z.maximum(65535)),
    allowed: "an integer from 0 to 65535 (0 = any free port)",
    doc: "TCP port of the relay listener (on serverHost), when `relay` is on.",
  },
  relayMaxTunnels: {
    schema: (z: Z) => z.int().check(z.minimum(1), z.maximum(100000)),
    allowed: "an integer from 1 to 100000",
    doc: "Most nodes this relay keeps a tunnel for at once; more are refused (E_LIMIT).",
  },
  relayMaxStreamsPerMember: {
    schema: (z: Z) => z.int().check(z.minimum(1), z.maximum(100000)),
    allowed: "an integer from 1 to 100000",
    doc: "Most streams one member may have open or pending through this relay at once; more are refused (E_LIMIT).",
  },
  relayIdleTimeoutMs: {
    schema: (z: Z) => z.int().check(z.minimum(300), z.maximum(86400000)),
    allowed: "an integer number of milliseconds from 300 to 86400000",
    doc: "A relayed stream with no byte either way for this long is closed; tunnels are pinged every third of it (at most 15 s) and dropped after three silent pings.",
  },
  relayMaxPublicPorts: {
    schema: (z: Z) => z.int().check(z.minimum(0), z.maximum(10000)),
    allowed: "an integer from 0 to 10000 (0 = none)",
    doc: "Most public ports this relay opens for members' public mappings (p2prc --mp --public), all nodes together; 0 (the default) opens none: every mapping stays members-only.",
  },
  relayPublicPortMin: {
    schema: (z: Z) => z.int().check(z.minimum(1), z.maximum(65535)),
    allowed: "an integer from 1 to 65535",
    doc: "Lowest port of the range public ports are opened in (on serverHost).",
  },
  relayPublicPortMax: {
    schema: (z: Z) => z.int().check(z.minimum(1), z.maximum(65535)),
    allowed: "an integer from 1 to 65535",
    doc: "Highest port of the range public ports are opened in.",
  },
  relayHttpPort: {
    schema: (z: Z) => z.int().check(z.minimum(0), z.maximum(65535)),
    allowed: "an integer from 0 to 65535 (0 = none)",
    doc: "TCP port (on serverHost) where the relay routes public mappings with a domain (p2prc --mp --dn) by the Host of each connection's first HTTP request; 0 (the default): no domain routing. Counts against relayMaxPublicPorts.",
  },
  relay: {
    schema: (z: Z) => z.boolean(),
    allowed: "true or false",
    doc: "Serve as a relay: members behind a NAT keep a tunnel here and other members reach them through it (Docs/P2P.md#relay).",
  },
  defaultImage: {
    schema: (z: Z) => imageRef(z),
    allowed: "a container image reference such as debian:bookworm-slim",
    doc: "Image used when a task names none.",
  },
  allowedImages: {
    schema: (z: Z) => z.array(imageRef(z)).check(z.maxLength(256)),
    allowed: "a list of image references (env: comma-separated); empty = any image",
    doc: "Images this node agrees to run; empty allows any.",
  },
  privateRegistries: {
    schema: (z: Z) =>
      z
        .array(z.string().check(z.regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})(:\d{1,5})?$/)))
        .check(z.maxLength(64)),
    allowed: "a list of registry hosts, host or host:port (env: comma-separated)",
    doc: "Registries on loopback, link-local or private addresses (or local names) that images may come from; images naming any other such registry are refused.",
  },
  maxContainers: {
    schema: (z: Z) => z.int().check(z.minimum(0), z.maximum(10000)),
    allowed: "an integer from 0 to 10000",
    doc: "Most task containers this node runs at once.",
  },
  maxCpusPerContainer: {
    schema: (z: Z) => z.number().check(z.minimum(0.01), z.maximum(1024)),
    allowed: "a number from 0.01 to 1024",
    doc: "CPU cap of one container.",
  },
  maxMemoryMbPerContainer: {
    schema: (z: Z) => z.int().check(z.minimum(6), z.maximum(4194304)),
    allowed: "an integer number of MiB from 6 to 4194304",
    doc: "Memory cap of one container in MiB.",
  },
  defaultCpus: {
    schema: (z: Z) => z.number().check(z.minimum(0.01), z.maximum(1024)),
    allowed: "a number from 0.01 to 1024",
    doc: "CPUs given to a container that asks for none.",
  },
  defaultMemoryMb: {
    schema: (z: Z) => z.int().check(z.minimum(6), z.maximum(4194304)),
    allowed: "an integer number of MiB from 6 to 4194304",
    doc: "Memory given to a container that asks for none, in MiB.",
  },
  pidsLimit: {
    schema: (z: Z) => z.int().check(z.minimum(8), z.maximum(1048576)),
    allowed: "an integer from 8 to 1048576",
    doc: "Most processes inside one container.",
  },
  defaultTtlSeconds: {
    schema: (z: Z) => z.int().check(z.minimum(1), z.maximum(31536000)),
    allowed: "an integer number of seconds from 1 to 31536000",
    doc: "Lease of a container that asks for none; the server removes it after this.",
  },
  maxTtlSeconds: {
    schema: (z: Z) => z.int().check(z.minimum(1), z.maximum(31536000)),
    allowed: "an integer number of seconds from 1 to 31536000",
    doc: "Longest lease a container may ask for.",
  },
  maxDiskMbPerContainer: {
    schema: (z: Z) => z.int().check(z.minimum(1), z.maximum(1e9)),
    allowed: "an integer number of MiB from 1 to 1000000000",
    doc: "Most a container may write to its own file system, in MiB: a quota where the engine's storage supports one, otherwise checked by the reconciler, which removes a container over it.",
  },
  containerLogMaxMb: {
    schema: (z: Z) => z.int().check(z.minimum(1), z.maximum(1024)),
    allowed: "an integer number of MiB from 1 to 1024",
    doc: "Size of one log file of a container before the engine rotates it (json-file max-size).",
  },
  containerLogMaxFiles: {
    schema: (z: Z) => z.int().check(z.minimum(2), z.maximum(100)),
    allowed: "an integer from 2 to 100",
    doc: "Log files kept per container (json-file max-file); a container's logs take at most containerLogMaxMb × this on disk.",
  },
  inputCacheMb: {
    schema: (z: Z) => z.int().check(z.minimum(1), z.maximum(1e9)),
    allowed: "an integer number of MiB from 1 to 1000000000",
    doc: "Disk the node's cache of batch inputs may use, in MiB (files kept by their SHA-256, so an input shared by many tasks is sent once per node); the least recently used go first beyond it.",
  },
  gossipIntervalMs: {
    schema: (z: Z) => z.int().check(z.minimum(50), z.maximum(600000)),
    allowed: "an integer number of milliseconds from 50 to 600000",
    doc: "Interval between gossip rounds and heartbeats.",
  },
  gossipFanout: {
    schema: (z: Z) => z.int().check(z.minimum(1), z.maximum(16)),
    allowed: "an integer from 1 to 16",
    doc: "Peers contacted per gossip round while anything changes; a round in a quiet network (every table equal, nothing failed) contacts one, and fewer (down to one) are contacted while exchanges time out.",
  },
  suspectTimeoutMs: {
    schema: (z: Z) => z.int().check(z.minimum(100), z.maximum(3600000)),
    allowed: "an integer number of milliseconds from 100 to 3600000",
    doc: "A peer that stops answering and is not heard from for this long is declared dead (up to gossipFanout times longer while this node's own exchanges time out).",
  },
  maxPeers: {
    schema: (z: Z) => z.int().check(z.minimum(16), z.maximum(100000)),
    allowed: "an integer from 16 to 100000",
    doc: "Most rows the IP table keeps (tombstones included). Beyond it, tombstones go first, then nodes this node never reached itself; nodes vouched for (this node, `trusted`, its clusters' members) are never dropped.",
  },
  maxUnverifiedPeers: {
    schema: (z: Z) => z.int().check(z.minimum(0), z.maximum(10000)),
    allowed: "an integer from 0 to 10000",
    doc: "Records of new nodes that peers passed on, held (in memory) until this node has reached each node itself; more are dropped.",
  },
  maxUnverifiedPerPeer: {
    schema: (z: Z) => z.int().check(z.minimum(1), z.maximum(10000)),
    allowed: "an integer from 1 to 10000",
    doc: "Of those, most one peer may have introduced (pending, or found unreachable in the last minute).",
  },
  probeConcurrency: {
    schema: (z: Z) => z.int().check(z.minimum(1), z.maximum(64)),
    allowed: "an integer from 1 to 64",
    doc: "Introduced nodes probed at once, each gossip round (fewer while probes time out).",
  },
  gossipMaxRecords: {
    schema: (z: Z) => z.int().check(z.minimum(1), z.maximum(5000)),
    allowed: "an integer from 1 to 5000",
    doc: "Most records, death notices and wanted ids one sync carries each way; a larger difference is caught up over several rounds.",
  },
  dataDir: {
    schema: (z: Z) => z.string().check(z.maxLength(4096)),
    allowed: "a directory path; empty = the home directory",
    doc: "Where state.db lives.",
  },
  dockerHost: {
    schema: (z: Z) => z.string().check(z.regex(/^$|^(unix|tcp|npipe):\/\/.+$/)),
    allowed: "empty, unix:///path/to/docker.sock or tcp://host:port",
    doc: "Engine socket; empty = $DOCKER_HOST, else /var/run/docker.sock (a Podman socket works too).",
  },
  engine: {
    schema: (z: Z) => z.enum(["docker", "swarm"]),
    allowed: '"docker" or "swarm"',
    doc: "What dockerHost is: one Docker engine that runs the containers (docker), or a Docker Swarm manager whose swarm places them on its machines (swarm; Docs/Server.md, Behind a Swarm).",
  },
  swarmPorts: {
    schema: (z: Z) => z.enum(["auto", "mesh", "host"]),
    allowed: '"auto", "mesh" or "host"',
    doc: "With engine swarm, how published ports are offered: mesh (the routing mesh: the port on every machine's address; needs IPVS in the kernels), host (on the machine that runs the task; each port mapping names that machine) or auto (mesh where this host has /proc/net/ip_vs, else host).",
  },
  engineTimeoutMs: {
    schema: (z: Z) => z.int().check(z.minimum(100), z.maximum(600000)),
    allowed: "an integer number of milliseconds from 100 to 600000",
    doc: "Most time one container-engine call may take (three times that to create, start or remove a container); then the route answers 503 E_ENGINE_UNAVAILABLE (retryable). Not a limit on following logs, on an exec's run, or on a pull that still reports progress.",
  },
  memberMaxContainers: {
    schema: (z: Z) => z.int().check(z.minimum(0), z.maximum(10000)),
    allowed: "an integer from 0 to 10000",
    doc: "Most containers one member (another node) may run here at once; this node's own key is exempt.",
  },
  memberMaxCpus: {
    schema: (z: Z) => z.number().check(z.minimum(0), z.maximum(100000)),
    allowed: "a number from 0 to 100000",
    doc: "Most CPUs one member's containers may hold here together.",
  },
  memberMaxMemoryMb: {
    schema: (z: Z) => z.int().check(z.minimum(0), z.maximum(1e9)),
    allowed: "an integer number of MiB from 0 to 1000000000",
    doc: "Most memory one member's containers may hold here together, in MiB.",
  },
  memberImageQuotaMb: {
    schema: (z: Z) => z.int().check(z.minimum(0), z.maximum(1e9)),
    allowed: "an integer number of MiB from 0 to 1000000000",
    doc: "Most disk one member's pushed images may hold here together, in MiB (their archives' size); a push over it is refused (413). This node's own key is exempt.",
  },
  memberRequestsPerMinute: {
    schema: (z: Z) => z.int().check(z.minimum(0), z.maximum(1e9)),
    allowed: "an integer from 0 to 1000000000 (0 = no limit)",
    doc: "Most signed requests one node other than this one may make here a minute (429 above).",
  },
  trusted: {
    schema: (z: Z) => z.array(z.string().check(z.regex(/^[0-9a-f]{64}$/))).check(z.maxLength(10000)),
    allowed: "a list of node ids, 64 hex characters each (env: comma-separated)",
    doc: "Nodes besides this one that may use it: your own other machines (the personal cluster).",
  },
  imagePushes: {
    schema: (z: Z) => z.boolean(),
    allowed: "true or false",
    doc: "Members may push images to this node (p2prc image push) and fetch images it has; each pushed image counts against its pusher's memberImageQuotaMb. allowedImages still applies.",
  },
  futures: {
    schema: (z: Z) => z.boolean(),
    allowed: "true or false",
    doc: "Offer members this node's runtime image (p2prc-runtime, built from its own executable) for futures and p2prc run; false refuses it. allowedImages does not apply to it.",
  },
  openNetwork: {
    schema: (z: Z) => z.boolean(),
    allowed: "true or false",
    doc: "Accept any node whose requests are signed (a public network). Off: only this node and `trusted`.",
  },
  tls: {
    schema: (z: Z) => z.boolean(),
    allowed: "true or false",
    doc: "Serve TLS with a self-signed certificate that peers pin (its fingerprint is in the signed record). false: plain HTTP, and plain-HTTP peers are accepted.",
  },
  metricsToken: {
    schema: (z: Z) => z.string().check(z.regex(/^$|^[A-Za-z0-9._~+/=-]{16,256}$/)),
    allowed: "empty, or 16 to 256 characters of A-Z a-z 0-9 . _ ~ + / = -",
    doc: "Bearer token a Prometheus scrape of /metrics must send. Empty: /metrics answers loopback only.",
  },
  requestSkewSeconds: {
    schema: (z: Z) => z.int().check(z.minimum(1), z.maximum(3600)),
    allowed: "an integer number of seconds from 1 to 3600",
    doc: "How far a signed request's timestamp may be from this node's clock.",
  },
  logLevel: {
    schema: (z: Z) => z.enum(["silent", "error", "warn", "info", "debug"]),
    allowed: '"silent", "error", "warn", "info" or "debug"',
    doc: "Log verbosity (stderr).",
  },
} as const;

export type ConfigField = keyof typeof CONFIG_FIELDS;

type Shape = { [K in ConfigField]: ReturnType<(typeof CONFIG_FIELDS)[K]["schema"]> };

/** The whole config. */
export type Config = { [K in ConfigField]: z.infer<Shape[K]> };

const built = new Map<ConfigField, Shape[ConfigField]>();
/** One field's schema, built on first use. */
export function fieldSchema<K extends ConfigField>(field: K): Shape[K] {
  let schema = built.get(field);
  if (!schema) {
    schema = (CONFIG_FIELDS[field].schema as (z: Z) => Shape[K])(zod());
    built.set(field, schema);
  }
  return schema as Shape[K];
}

/** The whole config as one strict zod object (unknown fields are errors). Built on first use. */
export function configSchema() {
  const shape = Object.fromEntries(
    Object.keys(CONFIG_FIELDS).map((k) => [k, fieldSchema(k as ConfigField)]),
  ) as Shape;
  return zod().strictObject(shape);
}

/** Where one effective value came from. */
export type ConfigSource = "default" | "file" | "env" | "flag";
