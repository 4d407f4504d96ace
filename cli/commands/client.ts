import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import {
  type GroupView,
  getSpecs,
  groups,
  removeContainer,
  type StartedContainer,
  startContainer,
  trackedContainers,
  viewImages,
} from "../../abstractions/index.ts";
import { type Command, type CommandContext, listFlag, stringFlag } from "../context.ts";
import { toJson, usageError } from "../io.ts";
import { specsLines } from "./specs-text.ts";

function number(
  ctx: CommandContext,
  flag: "cpus" | "memory" | "ttl" | "ports",
  integer: boolean,
): number | undefined {
  const raw = stringFlag(ctx, flag);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) {
    throw usageError(`--${flag}: expected ${integer ? "a whole number" : "a number"}, got "${raw}"`);
  }
  return n;
}

/** The private keys ssh tries by itself (ssh(1), -i): a command printed for another needs `-i`. */
const SSH_DEFAULT_KEYS = ["id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk", "id_dsa"];

/**
 * The SSH public key: --ssh-key <file>, else ~/.ssh/id_ed25519.pub or id_rsa.pub when present, with the
 * private key to name in the printed ssh command when ssh would not try it by itself;
 * `--ssh-key none`: no SSH even when a default key exists.
 */
function sshKey(ctx: CommandContext): { key: string; identityFile?: string } | undefined {
  const given = stringFlag(ctx, "ssh-key");
  if (given === "none") return undefined;
  const candidates = given
    ? [given]
    : [join(homedir(), ".ssh", "id_ed25519.pub"), join(homedir(), ".ssh", "id_rsa.pub")];
  for (const path of candidates) {
    if (existsSync(path)) {
      const key = readFileSync(path, "utf8").trim();
      const privateKey = resolve(path.replace(/\.pub$/, ""));
      const isDefault = SSH_DEFAULT_KEYS.some((k) => privateKey === join(homedir(), ".ssh", k));
      return isDefault ? { key } : { key, identityFile: privateKey };
    }
    if (given) throw usageError(`--ssh-key: no file ${path}`);
  }
  return undefined;
}

function printStarted(ctx: CommandContext, s: StartedContainer): void {
  if (ctx.json) {
    ctx.io.out(
      toJson({ id: s.id, node: s.node.id, image: s.image, ports: s.ports, ...(s.ssh ? { ssh: s.ssh } : {}) }),
    );
    return;
  }
  ctx.io.out(`container: ${s.id}`);
  ctx.io.out(`node:      ${[s.node.name, s.node.id, `(${s.node.url})`].filter(Boolean).join(" ")}`);
  ctx.io.out(`image:     ${s.image}`);
  ctx.io.out(
    `ports:     ${s.ports.length ? s.ports.map((p) => `${p.internal}->${p.external}`).join(", ") : "(none)"}`,
  );
  ctx.io.out(`expires:   ${s.expiresAt}`);
  if (s.ssh) ctx.io.out(`ssh:       ${s.ssh.command}`);
}

/** `--env NAME=value`, repeatable (--touch's environment, --plugin's options). */
export function envFlag(ctx: CommandContext): Record<string, string> | undefined {
  const pairs = listFlag(ctx, "env");
  if (pairs.length === 0) return undefined;
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(pair);
    if (!m) throw usageError(`--env: expected NAME=value, got "${pair}"`, "for example --env MODE=fast");
    env[m[1] as string] = m[2] as string;
  }
  return env;
}

/** `--publish 80,443`: container ports published on free host ports. */
function publishFlag(ctx: CommandContext): number[] | undefined {
  const raw = stringFlag(ctx, "publish");
  if (raw === undefined) return undefined;
  const ports = raw.split(",").map((p) => p.trim());
  for (const p of ports) {
    if (!/^\d{1,5}$/.test(p) || Number(p) < 1 || Number(p) > 65535)
      throw usageError(`--publish: expected ports from 1 to 65535 separated by commas, got "${raw}"`);
  }
  return [...new Set(ports.map(Number))];
}

/** `--exec-container <node>` / `--touch` / `--CreateVM` [-- command args…] */
export const execContainerCommand: Command = async (ctx) => {
  const node = stringFlag(ctx, "exec-container") as string;
  const key = sshKey(ctx);
  const started = await startContainer(
    ctx.node,
    node,
    {
      ...(ctx.rest.length > 0 ? { command: ctx.rest } : {}),
      env: envFlag(ctx),
      publish: publishFlag(ctx),
      image: stringFlag(ctx, "image"),
      name: stringFlag(ctx, "name"),
      ports: number(ctx, "ports", true),
      cpus: number(ctx, "cpus", false),
      memoryMb: number(ctx, "memory", true),
      ttlSeconds: number(ctx, "ttl", true),
      gpu: ctx.flags.gpu === true ? true : undefined,
      sshPublicKey: key?.key,
    },
    { identityFile: key?.identityFile },
  );
  printStarted(ctx, started);
};

/** `--rm <node> --id <id>` / `--RemoveVM` */
export const removeVmCommand: Command = async (ctx) => {
  const id = stringFlag(ctx, "id");
  if (!id) throw usageError("--remove-vm needs --id <container id>");
  const r = await removeContainer(ctx.node, stringFlag(ctx, "remove-vm") as string, id);
  if (ctx.json) return ctx.io.out(toJson(r.alreadyGone ? { gone: r.id } : { removed: r.id }));
  ctx.io.out(r.alreadyGone ? `${id} was already gone from ${r.node}; no longer tracked` : `removed ${id}`);
};

/** `--vi <node>` / `--ViewImages` */
export const viewImagesCommand: Command = async (ctx) => {
  const { images } = await viewImages(ctx.node, stringFlag(ctx, "view-images") as string);
  if (ctx.json) return ctx.io.out(toJson(images));
  for (const i of images) ctx.io.out(`${i.tags.join(", ")}  ${(i.sizeBytes / 1e6).toFixed(1)} MB`);
};

/** `--specs <node>` / `--Specification` */
export const specsCommand: Command = async (ctx) => {
  const specs = await getSpecs(ctx.node, stringFlag(ctx, "specs") as string);
  if (ctx.json) return ctx.io.out(toJson(specs));
  for (const line of specsLines(specs)) ctx.io.out(line);
};

/** `--tc` / `--TrackedContainers` */
export const trackedCommand: Command = async (ctx) => {
  const list = await trackedContainers(ctx.node);
  if (ctx.json) return ctx.io.out(toJson(list));
  if (list.length === 0) return ctx.io.out("(no tracked containers)");
  for (const t of list)
    ctx.io.out(
      `${t.id.slice(0, 12)}  ${t.name}  ${t.image}  ${t.state}  ${t.nodeUrl}${t.ssh ? `  ${t.ssh.command}` : ""}`,
    );
};

function printGroup(ctx: CommandContext, g: GroupView): void {
  if (ctx.json) {
    ctx.io.out(toJson(g));
    return;
  }
  ctx.io.out(`${g.id}  (${g.containers.length} containers)`);
  for (const c of g.containers) ctx.io.out(`  ${c.id.slice(0, 12)}  ${c.name}  ${c.nodeUrl}`);
}

/** `--cgroup` / `--CreateGroup` */
export const createGroupCommand: Command = async (ctx) => {
  const g = await groups.create(ctx.node);
  ctx.io.out(ctx.json ? toJson(g) : g.id);
};

/** `--group <gid>` [--id <cid> [--rmcgroup]] */
export const groupCommand: Command = async (ctx) => {
  const gid = stringFlag(ctx, "group") as string;
  const cid = stringFlag(ctx, "id");
  if (ctx.flags["remove-container-group"] && !cid) throw usageError("--rmcgroup needs --id <container id>");
  const g = cid
    ? ctx.flags["remove-container-group"]
      ? await groups.removeMember(ctx.node, gid, cid)
      : await groups.add(ctx.node, gid, cid)
    : await groups.show(ctx.node, gid);
  printGroup(ctx, g);
};

/** `--rmgroup <gid>` / `--RemoveGroup` */
export const removeGroupCommand: Command = async (ctx) => {
  const gid = stringFlag(ctx, "remove-group") as string;
  await groups.remove(ctx.node, gid);
  ctx.io.out(ctx.json ? toJson({ removed: gid }) : `removed ${gid}`);
};

/** `--groups` / `--Groups` */
export const groupsCommand: Command = async (ctx) => {
  const list = await groups.list(ctx.node);
  if (ctx.json) return ctx.io.out(toJson(list));
  if (list.length === 0) return ctx.io.out("(no groups)");
  for (const g of list) printGroup(ctx, g);
};
