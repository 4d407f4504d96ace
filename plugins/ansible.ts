import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { P2prcError } from "../core/index.ts";
import { copyPlugin } from "./files.ts";
import { renderSite } from "./ports.ts";
import { type ProcessResult, type RunProcess, runProcess, type Which, which } from "./process.ts";
import type { PluginInfo } from "./types.ts";

/** How Ansible logs into the container: its published ssh port, by key (never a password). */
export interface SshTarget {
  host: string;
  port: number;
  user: string;
  /** The private key, when ssh would not try it by itself. */
  identityFile?: string | undefined;
}

/** What running P2PRC-layout plugins needs on this machine. */
export interface AnsibleDeps {
  run?: RunProcess;
  which?: Which;
}

/**
 * ansible-playbook's path, or E_NOT_AVAILABLE in one clear line: a P2PRC-layout plugin runs with
 * Ansible on this machine, and nothing else can run its site.yml.
 */
export function ansiblePlaybook(plugin: PluginInfo, deps: AnsibleDeps = {}): string {
  const found = (deps.which ?? which)("ansible-playbook");
  if (!found) {
    throw new P2prcError(
      "E_NOT_AVAILABLE",
      `plugin ${plugin.name} is a P2PRC (Ansible) plugin and ansible-playbook is not installed on this machine`,
      {
        hint: "install Ansible (apt-get install ansible-core), or port the plugin to plugin.json (Docs/Plugins.md)",
      },
    );
  }
  return found;
}

/** The play targets site.yml names (`hosts: web`), so that the inventory puts the container in each. */
function playGroups(site: string): string[] {
  const groups = new Set<string>();
  for (const m of site.matchAll(/^\s*-?\s*hosts:\s*["']?([A-Za-z0-9_.:-]+)["']?\s*$/gm)) {
    for (const g of (m[1] as string).split(":")) if (g && g !== "all" && g !== "localhost") groups.add(g);
  }
  return [...groups];
}

/**
 * Runs a P2PRC-layout plugin against one container with ansible-playbook on this machine: site.yml
 * rendered with the ports handed out, an inventory of our own (P2PRC's `hosts` is replaced: it held
 * `master`/`password`) that logs in by key as the container's ssh user, host keys not recorded.
 */
export async function runAnsible(
  plugin: PluginInfo,
  target: SshTarget,
  ports: number[],
  o: AnsibleDeps & { timeoutSeconds?: number } = {},
): Promise<ProcessResult> {
  const playbook = ansiblePlaybook(plugin, o);
  const work = mkdtempSync(join(tmpdir(), `p2prc-ansible-${plugin.name}-`));
  try {
    copyPlugin(plugin.dir, join(work, "plugin"));
    const dir = join(work, "plugin");
    const site = renderSite(readFileSync(join(dir, "site.yml"), "utf8"), ports);
    writeFileSync(join(dir, "site.yml"), site);
    const host = [
      "container",
      `ansible_host=${target.host}`,
      `ansible_port=${target.port}`,
      `ansible_user=${target.user}`,
      ...(target.identityFile ? [`ansible_ssh_private_key_file=${target.identityFile}`] : []),
    ].join(" ");
    const inventory = ["[all]", host, ...playGroups(site).flatMap((g) => [`[${g}]`, "container"])].join("\n");
    writeFileSync(join(work, "inventory.ini"), `${inventory}\n`);
    const ssh = [
      "-o StrictHostKeyChecking=no",
      "-o UserKnownHostsFile=/dev/null",
      "-o PasswordAuthentication=no",
      "-o KbdInteractiveAuthentication=no",
      "-o BatchMode=yes",
    ].join(" ");
    return await (o.run ?? runProcess)(
      [playbook, "-i", join(work, "inventory.ini"), "--ssh-common-args", ssh, join(dir, "site.yml")],
      {
        cwd: dir,
        env: { ...process.env, ANSIBLE_HOST_KEY_CHECKING: "False", ANSIBLE_NOCOLOR: "1" },
        timeoutMs: (o.timeoutSeconds ?? 600) * 1000,
      },
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
