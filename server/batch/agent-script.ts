// What the node writes to a task agent (the container's own `/bin/sh -s`, agent.ts): a fixed prelude, then
// one fragment per task that the node composes itself. Every request value (argv, env values, paths) is
// single-quoted with `'` written as `'\''`, so the shell reads it as one literal word: nothing a request
// holds is expanded, substituted or split. Env names are checked against the shell's name syntax (the
// schema already allows no other). What the agent prints back, on its stdout (1) and stderr (2):
//   1: <B> <seq> S\n   <task's stdout>   \n<B> <seq> R <exit code>\n   <output records>   \nE <B> <seq>\n
//   2: <B> <seq> S\n   <task's stderr>   \n<B> <seq>\n
// where B is 128 random bits per agent (hex) and the "\n" before a marker is the agent's, not the task's.
// Before its first task the agent prints `<B> ready\n` once, when it has read the prelude.
// A task whose directory is gone prints `<B> <seq> C\n` as its whole stdout (agent-stream.ts reads it).
// Output records, one per declared output in order: `F\n<bytes>\n<B> <seq> O <status>\n` (a regular
// file's first L bytes, and head's exit status), `M\n` missing, `D\n` anything else (the node reads that
// one with the archive call).

/**
 * What the agent runs once when it starts. Its own stderr goes to /dev/null and the tasks' to fd 3 (the
 * exec's stderr), so what the shell says of a task (`Terminated` for one killed by a signal: a plain exec
 * has no such line) is not in the task's stderr. `O path seq` reports one output: a regular file's first
 * `L` bytes (one process, `head`: every process started in a small container costs milliseconds), then
 * a trailer with head's exit status; the node tells from the bytes whether it fits the reply's cap.
 * Constant text: nothing in it comes from a request.
 */
export const PRELUDE = `exec 3>&2 2>/dev/null
O() {
  if [ -h "$1" ]; then echo D
  elif [ -f "$1" ]; then
    if ! command -v head >/dev/null 2>&1; then echo D; return; fi
    printf 'F\\n'; head -c "$L" < "$1" 2>/dev/null; printf '\\n%s %s O %s\\n' "$B" "$2" "$?"
  elif [ -e "$1" ]; then echo D
  else echo M
  fi
}
printf '%s ready\\n' "$B"
`;

/** A shell word that stands for `s` exactly (argv and env cannot hold NUL: the schema refuses it). */
export function quote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

/** What the agent's shell accepts as a variable name. */
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The first thing written to a new agent: its marker and the prelude. */
export function agentStart(marker: string): string {
  if (!/^[0-9a-f]{32}$/.test(marker)) throw new Error("agent marker: 32 hex digits");
  return `B=${marker}\n${PRELUDE}`;
}

/** One task as the agent runs it. */
export interface TaskScript {
  seq: number;
  workingDir: string;
  command: string[];
  env?: Record<string, string> | undefined;
  /** Absolute paths of the declared outputs, in order; `null` where the node reads that one itself (D). */
  outputs?: (string | null)[] | undefined;
  /** Bytes read of each output file at most (the reply's cap: a file that reaches it is too large). */
  cap: number;
}

/**
 * The fragment for one task; undefined when the shell would not run it as a plain exec does (an env name
 * the shell does not take, a program named like an option of `exec`): a plain exec then.
 */
export function taskFragment(t: TaskScript): string | undefined {
  const env = Object.entries(t.env ?? {});
  if (env.some(([k]) => !NAME.test(k)) || (t.command[0] ?? "-").startsWith("-")) return undefined;
  const n = String(t.seq);
  const exports = env.map(([k, v]) => `export ${quote(k)}=${quote(v)}; `).join("");
  const argv = t.command.map(quote).join(" ");
  const outputs = (t.outputs ?? []).map((p) => (p === null ? "echo D; " : `O ${quote(p)} ${n}; `)).join("");
  return (
    `printf '%s %s S\\n' "$B" ${n}; printf '%s %s S\\n' "$B" ${n} >&3; ` +
    `( exec 3>&-; cd -- ${quote(t.workingDir)} 2>/dev/null || { printf '%s %s C\\n' "$B" ${n}; exit 1; }; ` +
    `${exports}exec ${argv} ) 2>&3 </dev/null; r=$?; ` +
    `printf '\\n%s %s R %s\\n' "$B" ${n} "$r"; printf '\\n%s %s\\n' "$B" ${n} >&3; ` +
    `L=${Math.max(0, Math.floor(t.cap))}; ${outputs}printf '\\nE %s %s\\n' "$B" ${n}\n`
  );
}
