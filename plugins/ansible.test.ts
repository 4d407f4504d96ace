import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ansiblePlaybook, runAnsible } from "./ansible.ts";
import { readPlugin } from "./layout.ts";

const dir = mkdtempSync(join(tmpdir(), "p2prc-ansible-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
mkdirSync(join(dir, "vscode"));
writeFileSync(join(dir, "vscode", "description.txt"), "VS Code in the browser");
writeFileSync(join(dir, "vscode", "ports.json"), '{"NumOfPorts": 1}');
writeFileSync(
  join(dir, "vscode", "site.yml"),
  "- hosts: servers\n  tasks:\n    - shell: serve --port {{index . 0}}\n",
);
writeFileSync(join(dir, "vscode", "hosts"), "servers:\n  hosts:\n    x: { ansible_ssh_pass: password }\n");
const plugin = readPlugin(join(dir, "vscode"), "vscode");

test("without ansible-playbook: E_NOT_AVAILABLE in one line, with what to do", () => {
  expect(() => ansiblePlaybook(plugin, { which: () => undefined })).toThrow(
    "plugin vscode is a P2PRC (Ansible) plugin and ansible-playbook is not installed on this machine",
  );
});

test("ansible-playbook gets the rendered site.yml and our inventory: by key, never a password", async () => {
  let seen: { argv: string[]; site: string; inventory: string } | undefined;
  const r = await runAnsible(
    plugin,
    { host: "192.0.2.7", port: 40022, user: "root", identityFile: "/home/u/.ssh/p2prc" },
    [41001],
    {
      which: () => "/usr/bin/ansible-playbook",
      run: async (argv) => {
        const inv = argv[argv.indexOf("-i") + 1] as string;
        seen = {
          argv,
          site: readFileSync(argv.at(-1) as string, "utf8"),
          inventory: readFileSync(inv, "utf8"),
        };
        return { code: 0, stdout: "ok", stderr: "", timedOut: false };
      },
    },
  );
  expect(r.code).toBe(0);
  expect(seen?.site).toContain("serve --port 41001");
  expect(seen?.inventory).toBe(
    "[all]\ncontainer ansible_host=192.0.2.7 ansible_port=40022 ansible_user=root ansible_ssh_private_key_file=/home/u/.ssh/p2prc\n[servers]\ncontainer\n",
  );
  expect(seen?.argv.join(" ")).toContain("-o PasswordAuthentication=no");
  expect(seen?.argv.join(" ")).not.toContain("password ");
  // the installed plugin is untouched (the template is rendered into a copy)
  expect(readFileSync(join(dir, "vscode", "site.yml"), "utf8")).toContain("{{index . 0}}");
});
