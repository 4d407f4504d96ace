// The container verbs as data, imported by the help and the dispatcher without loading their command.

/** The container verbs, Docker's and Nomad's words: `p2prc logs|exec|cp|ps|lease|stop|start …`. */
export const CONTAINER_VERBS = ["logs", "exec", "cp", "ps", "lease", "stop", "start"] as const;
export type ContainerVerb = (typeof CONTAINER_VERBS)[number];

export const CONTAINER_HELP: Record<ContainerVerb, string> = {
  logs: "p2prc logs [<node>] <container> [-f|--follow] [--tail N] [--since <time>]",
  exec: "p2prc exec [<node>] <container> [-e K=V]… [-w <dir>] [--timeout S] -- <command> [args…]",
  cp: "p2prc cp [<node>:]<container>:<path> <local>   |   p2prc cp <local> [<node>:]<container>:<path>",
  ps: "p2prc ps [<node>] [--json]",
  lease: "p2prc lease [<node>] <container> --ttl <seconds> [--json]",
  stop: "p2prc stop [<node>] <container> [--time <seconds>] [--json]",
  start: "p2prc start [<node>] <container> [--json]",
};

/** Whether `word` (the first argument) is a container verb. */
export function isContainerVerb(word: string | undefined): word is ContainerVerb {
  return (CONTAINER_VERBS as readonly (string | undefined)[]).includes(word);
}
