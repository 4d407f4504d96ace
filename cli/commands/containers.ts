import { Readable } from "node:stream";
import {
  type ContainerRef,
  type ContainerStatus,
  containers,
  type NodeOptions,
} from "../../abstractions/index.ts";
import { P2prcError } from "../../core/index.ts";
import { type CliIO, type Terminal, toJson, usageError, writeRaw } from "../io.ts";
import type { RunOptions } from "../run.ts";
import { CONTAINER_HELP, type ContainerVerb } from "../verbs.ts";

interface FlagSpec {
  type: "boolean" | "string" | "list";
  short?: string;
}

const COMMON: Record<string, FlagSpec> = {
  json: { type: "boolean" },
  "config-dir": { type: "string" },
};

const VERB_FLAGS: Record<ContainerVerb, Record<string, FlagSpec>> = {
  logs: { follow: { type: "boolean", short: "f" }, tail: { type: "string" }, since: { type: "string" } },
  exec: {
    env: { type: "list", short: "e" },
    workdir: { type: "string", short: "w" },
    timeout: { type: "string" },
    interactive: { type: "boolean", short: "i" },
    tty: { type: "boolean", short: "t" },
  },
  cp: {},
  ps: {},
  lease: { ttl: { type: "string" } },
  stop: { time: { type: "string" } },
  start: {},
};

interface Parsed {
  flags: Record<string, string | boolean | string[]>;
  positionals: string[];
  /** What follows `--` (exec's command). */
  rest: string[] | undefined;
}

/** Parses one verb's argv: `--name value`, `--name=value`, `-x value`, grouped short booleans (`-it`). */
function parse(verb: ContainerVerb, argv: string[]): Parsed {
  const specs: Record<string, FlagSpec> = { ...COMMON, ...VERB_FLAGS[verb] };
  const byShort = new Map(Object.entries(specs).flatMap(([n, s]) => (s.short ? [[s.short, n]] : [])));
  const usage = `usage: ${CONTAINER_HELP[verb]}`;
  const out: Parsed = { flags: {}, positionals: [], rest: undefined };
  const set = (name: string, value: string | boolean) => {
    const spec = specs[name] as FlagSpec;
    if (spec.type === "list") out.flags[name] = [...((out.flags[name] as string[]) ?? []), String(value)];
    else out.flags[name] = value;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--") {
      out.rest = argv.slice(i + 1);
      break;
    }
    if (!arg.startsWith("-") || arg === "-" || /^-\d/.test(arg)) {
      out.positionals.push(arg);
      continue;
    }
    let names: string[];
    let inline: string | undefined;
    if (arg.startsWith("--")) {
      const [n = "", v] = arg.slice(2).split(/=(.*)/s, 2);
      names = [n];
      inline = v;
    } else {
      names = [...arg.slice(1)].map((c) => byShort.get(c) ?? `-${c}`);
    }
    for (const [k, name] of names.entries()) {
      const spec = specs[name];
      if (!spec)
        throw usageError(`${verb}: unknown flag ${name.startsWith("-") ? name : `--${name}`}`, usage);
      if (spec.type === "boolean") {
        if (inline !== undefined) throw usageError(`${verb}: --${name} takes no value`, usage);
        set(name, true);
        continue;
      }
      if (k !== names.length - 1) throw usageError(`${verb}: --${name} needs a value`, usage);
      const value = inline ?? argv[++i];
      if (value === undefined) throw usageError(`${verb}: --${name} needs a value`, usage);
      set(name, value);
    }
  }
  return out;
}

function wholeNumber(verb: string, name: string, raw: unknown, max: number): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== "string" || !/^\d+$/.test(raw) || n > max)
    throw usageError(`${verb}: --${name}: expected a whole number from 0 to ${max}, got "${String(raw)}"`);
  return n;
}

/** `[<node>] <container>`: one positional is a container `--tc` tracks; two are node and container. */
function target(verb: ContainerVerb, positionals: string[]): ContainerRef {
  const usage = `usage: ${CONTAINER_HELP[verb]}`;
  if (positionals.length === 1) return { id: positionals[0] as string };
  if (positionals.length === 2) return { node: positionals[0] as string, id: positionals[1] as string };
  throw usageError(
    positionals.length === 0 ? `${verb}: which container?` : `${verb}: too many arguments`,
    usage,
  );
}

/**
 * `[<node>:]<container>:<path>`: the path is absolute, so it starts at the first `:/`; before it the
 * last `:` separates the node (which may be `host:port`) from the container. Undefined for a local path.
 */
export function parseRemote(arg: string): { ref: ContainerRef; path: string } | undefined {
  const at = arg.indexOf(":/");
  if (at <= 0) return undefined;
  const head = arg.slice(0, at);
  const path = arg.slice(at + 1);
  const colon = head.lastIndexOf(":");
  const ref = colon < 0 ? { id: head } : { node: head.slice(0, colon), id: head.slice(colon + 1) };
  if (ref.id === "" || ref.node === "") return undefined;
  return { ref, path };
}

function expires(c: ContainerStatus): string {
  const s = Math.round((Date.parse(c.expiresAt) - Date.now()) / 1000);
  return s <= 0 ? "now" : s < 3600 ? `${Math.ceil(s / 60)}m` : `${(s / 3600).toFixed(1)}h`;
}

function printStatus(io: CliIO, json: boolean, c: ContainerStatus, what: string): void {
  if (json) {
    io.out(toJson(c));
    return;
  }
  io.out(`${what} ${c.name} (${c.id.slice(0, 12)}): ${c.state}, lease ends ${c.expiresAt}`);
  if (c.ports.length) io.out(`ports: ${c.ports.map((p) => `${p.internal}->${p.external}`).join(", ")}`);
  if (c.ssh) io.out(`ssh:   ${c.ssh.command}`);
}

/** Runs a container verb; returns the exit code (exec: the command's own). */
export async function runContainerVerb(
  verb: ContainerVerb,
  argv: string[],
  io: CliIO,
  options: RunOptions,
): Promise<number> {
  if (argv[0] === "-h" || argv[0] === "--help" || (argv.includes("--help") && !argv.includes("--"))) {
    io.out(`usage: ${CONTAINER_HELP[verb]}`);
    return 0;
  }
  const { flags, positionals, rest } = parse(verb, argv);
  const json = flags.json === true;
  const node = {
    configDir: typeof flags["config-dir"] === "string" ? flags["config-dir"] : undefined,
    env: options.env ?? process.env,
  };
  const usage = `usage: ${CONTAINER_HELP[verb]}`;
  if (rest !== undefined && verb !== "exec") throw usageError(`${verb}: unexpected "--"`, usage);
  switch (verb) {
    case "ps": {
      if (positionals.length > 1) throw usageError("ps: too many arguments", usage);
      const list = await containers.list(node, positionals[0]);
      if (json) {
        io.out(toJson(list));
        return 0;
      }
      if (list.length === 0) {
        io.out("(no containers)");
        return 0;
      }
      for (const c of list)
        io.out(
          [
            c.id.slice(0, 12),
            c.name,
            c.image,
            c.state,
            `expires in ${expires(c)}`,
            c.ports.map((p) => `${p.internal}->${p.external}`).join(",") || "-",
            c.node,
          ].join("  "),
        );
      return 0;
    }
    case "logs": {
      const ref = target(verb, positionals);
      const tail = wholeNumber(verb, "tail", flags.tail, 9_999_999);
      const since = typeof flags.since === "string" ? flags.since : undefined;
      const signal = options.stopSignal;
      const stream = await containers.logs(node, ref, { follow: flags.follow === true, tail, since, signal });
      try {
        for await (const chunk of stream) writeRaw(io, chunk, "out");
      } catch (err) {
        // Ctrl-C ends a followed log: that is its normal end
        if (!signal?.aborted) throw err;
      }
      return 0;
    }
    case "exec": {
      const ref = target(verb, positionals);
      if (!rest || rest.length === 0) throw usageError("exec: give the command after --", usage);
      const env: Record<string, string> = {};
      for (const pair of (flags.env as string[] | undefined) ?? []) {
        const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(pair);
        if (!m) throw usageError(`exec: -e: expected NAME=value, got "${pair}"`, usage);
        env[m[1] as string] = m[2] as string;
      }
      const workdir = typeof flags.workdir === "string" ? flags.workdir : undefined;
      if (workdir !== undefined && !workdir.startsWith("/"))
        throw usageError(`exec: -w: expected an absolute path, got "${workdir}"`, usage);
      if (flags.interactive || flags.tty) {
        if (flags.timeout !== undefined)
          throw usageError("exec: --timeout is for a command without -i/-t", usage);
        if (json) throw usageError("exec: --json is for a command without -i/-t", usage);
        return interactiveExec(node, ref, rest, {
          tty: flags.tty === true,
          interactive: flags.interactive === true,
          env,
          workdir,
          io,
          terminal: options.terminal ?? processTerminal,
          signal: options.stopSignal,
        });
      }
      const timeoutSeconds = wholeNumber(verb, "timeout", flags.timeout, 3600);
      const r = await containers.exec(node, ref, rest, {
        ...(Object.keys(env).length ? { env } : {}),
        ...(workdir ? { workingDir: workdir } : {}),
        ...(timeoutSeconds ? { timeoutSeconds } : {}),
      });
      if (json) {
        io.out(toJson(r));
      } else {
        writeRaw(io, r.stdout, "out");
        writeRaw(io, r.stderr, "err");
      }
      if (r.truncated) io.err("p2prc: exec: the output was cut at 8 MiB a stream");
      if (r.timedOut) {
        io.err(`p2prc: exec: no exit within ${timeoutSeconds ?? 600} s; the command may still run`);
        return 124;
      }
      return r.exitCode;
    }
    case "cp": {
      if (positionals.length !== 2) throw usageError("cp: give a source and a destination", usage);
      const [src, dst] = positionals as [string, string];
      const from = parseRemote(src);
      const to = parseRemote(dst);
      if (from && to)
        throw usageError("cp: copy between a container and a local path, not two containers", usage);
      if (!from && !to) throw usageError("cp: one side must be <container>:<absolute path>", usage);
      if (from) {
        const r = await containers.copyOut(node, from.ref, from.path, dst);
        io.out(json ? toJson(r) : `copied ${from.path} to ${dst} (${r.files.length} files)`);
      } else if (to) {
        const r = await containers.copyIn(node, to.ref, src, to.path);
        io.out(json ? toJson(r) : `copied ${src} to ${r.path} (${r.bytes} bytes of tar)`);
      }
      return 0;
    }
    case "lease": {
      const ref = target(verb, positionals);
      const ttl = wholeNumber(verb, "ttl", flags.ttl, 31_536_000);
      if (!ttl) throw usageError("lease: --ttl <seconds> is required (from 1)", usage);
      printStatus(io, json, await containers.renew(node, ref, ttl), "renewed");
      return 0;
    }
    case "stop": {
      const ref = target(verb, positionals);
      const time = wholeNumber(verb, "time", flags.time, 20);
      printStatus(io, json, await containers.stop(node, ref, time), "stopped");
      return 0;
    }
    case "start": {
      const ref = target(verb, positionals);
      printStatus(io, json, await containers.start(node, ref), "started");
      return 0;
    }
  }
}

/**
 * `exec -i/-t`: the user's stdin streams to the command (`-i`), in a terminal with `-t` (raw mode: keys go
 * as typed, Ctrl-C included, and size changes follow); the command's exit code is the exit status.
 */
async function interactiveExec(
  node: NodeOptions,
  ref: ContainerRef,
  command: string[],
  o: {
    tty: boolean;
    interactive: boolean;
    env: Record<string, string>;
    workdir: string | undefined;
    io: CliIO;
    terminal: Terminal;
    signal: AbortSignal | undefined;
  },
): Promise<number> {
  const { terminal } = o;
  if (o.tty && !terminal.isTTY)
    throw new P2prcError("E_INVALID", "exec: -t needs a terminal on stdin, and this input is not one", {
      hint: "leave out -t to pipe input (-i), or run it in a terminal",
    });
  const size = o.tty ? terminal.size() : undefined;
  // without -i the command gets no input: its stdin ends at once
  const stdin = o.interactive
    ? terminal.input()
    : new ReadableStream<Uint8Array>({ start: (c) => c.close() });
  const restore = o.tty && o.interactive ? terminal.raw() : () => {};
  try {
    return await containers.execInteractive(node, ref, command, {
      tty: o.tty,
      ...(Object.keys(o.env).length ? { env: o.env } : {}),
      ...(o.workdir ? { workingDir: o.workdir } : {}),
      ...(size ? { cols: size.cols, rows: size.rows } : {}),
      stdin,
      output: (stream, data) => writeRaw(o.io, data, stream === 2 ? "err" : "out"),
      ...(o.tty ? { onResize: (fn: (cols: number, rows: number) => void) => terminal.onResize(fn) } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
    });
  } finally {
    restore();
    await stdin.cancel().catch(() => undefined);
  }
}

/** The process's own stdin and stdout (loaded with the container verbs only, not at every start). */
const processTerminal: Terminal = {
  get isTTY() {
    return process.stdin.isTTY === true;
  },
  input() {
    return Readable.toWeb(process.stdin) as unknown as ReadableStream<Uint8Array>;
  },
  raw() {
    if (!process.stdin.isTTY) return () => {};
    process.stdin.setRawMode(true);
    return () => process.stdin.setRawMode(false);
  },
  size() {
    const { columns, rows } = process.stdout;
    return process.stdout.isTTY && columns && rows ? { cols: columns, rows } : undefined;
  },
  onResize(fn) {
    const listener = () => {
      const s = processTerminal.size();
      if (s) fn(s.cols, s.rows);
    };
    process.stdout.on("resize", listener);
    return () => process.stdout.off("resize", listener);
  },
};
