// The container verbs as data, imported by the help and the dispatcher without loading their command.

/** The container verbs, Docker's and Nomad's words: `p2prc logs|exec|cp|ps|lease|stop|start …`. */
export const CONTAINER_VERBS = ["logs", "exec", "cp", "ps", "lease", "stop", "start"] as const;
export type ContainerVerb = (typeof CONTAINER_VERBS)[number];

export const CONTAINER_HELP: Record<ContainerVerb, string> = {
  logs: "p2prc logs [<node>] <container> [-f|--follow] [--tail N] [--since <time>]",
  exec: "p2prc exec [<node>] <container> [-i] [-t] [-e K=V]… [-w <dir>] [--timeout S] -- <command> [args…]",
  cp: "p2prc cp [<node>:]<container>:<path> <local>   |   p2prc cp <local> [<node>:]<container>:<path>",
  ps: "p2prc ps [<node>] [--json]",
  lease: "p2prc lease [<node>] <container> --ttl <seconds> [--json]",
  stop: "p2prc stop [<node>] <container> [--time <seconds>] [--json]",
  start: "p2prc start [<node>] <container> [--json]",
};

/** The relay's subcommands: ssh's ProxyCommand, a loopback forwarder, this node's port mappings. */
export const RELAY_SUBCOMMANDS = ["proxy", "forward", "mappings"] as const;
export type RelaySubcommand = (typeof RELAY_SUBCOMMANDS)[number];

export const RELAY_HELP: Record<RelaySubcommand, string> = {
  proxy: "p2prc proxy <node> <port>   (stdin/stdout to a port on the node's machine: ssh's ProxyCommand)",
  forward:
    "p2prc forward <node> <port> [--local <port>] [--json]   (a loopback listener for a relayed node's port)",
  mappings: "p2prc mappings [rm <port>] [--json]   (this node's --mp mappings; rm removes one and closes it)",
};

/** Whether `word` (the first argument) is a relay subcommand. */
export function isRelaySubcommand(word: string | undefined): word is RelaySubcommand {
  return (RELAY_SUBCOMMANDS as readonly (string | undefined)[]).includes(word);
}

/** Whether `word` (the first argument) is a container verb. */
export function isContainerVerb(word: string | undefined): word is ContainerVerb {
  return (CONTAINER_VERBS as readonly (string | undefined)[]).includes(word);
}

/** `p2prc run`: a script file on a node, as futures run (Docs/Futures.md). */
export const RUN_HELP =
  "p2prc run <node|auto> <script.ts> [args…] [--cpus N] [--memory-mb N] [--timeout S] [--json]   (its output and exit code come back)";

/** `p2prc image push|ls|rm`: images members push to a node (no registry needed). */
export const IMAGE_HELP =
  "p2prc image push <node> <image> [--json]  |  p2prc image ls <node> [--json]  |  p2prc image rm <node> <image> [--json]";
