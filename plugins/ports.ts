import { P2prcError } from "../core/index.ts";
import type { PortMapping } from "../store/index.ts";

/**
 * The published ports a plugin may be handed on a container (P2PRC's AutoSetPorts): every one but the
 * container's ssh port, container side, in the order the node published them.
 */
export function portCandidates(published: PortMapping[], sshPort: number | undefined): number[] {
  return published
    .filter((p) => !(sshPort !== undefined && p.external === sshPort && p.internal === 22))
    .map((p) => p.internal);
}

/**
 * The environment a plugin gets for its ports: `P2PRC_PORT_1`… (the container side, where its service
 * listens), `P2PRC_PORT_1_EXTERNAL`… (the node's side, where users reach it) and `P2PRC_PORTS` (all,
 * comma-separated).
 */
export function portEnv(ports: PortMapping[]): Record<string, string> {
  const env: Record<string, string> = { P2PRC_PORTS: ports.map((p) => p.internal).join(",") };
  ports.forEach((p, i) => {
    env[`P2PRC_PORT_${i + 1}`] = String(p.internal);
    env[`P2PRC_PORT_${i + 1}_EXTERNAL`] = String(p.external);
  });
  return env;
}

/**
 * P2PRC's site.yml template (Go's text/template over the list of ports): `{{index . 0}}` is the first
 * port, `{{"{{"}}` a literal. Other `{{ … }}` (Ansible's own Jinja expressions) are left as they are.
 */
export function renderSite(text: string, ports: number[]): string {
  return text.replace(
    /\{\{-?\s*(index\s+\.\s+(\d+)|"((?:[^"\\]|\\.)*)")\s*-?\}\}/g,
    (whole, _e, index, lit) => {
      if (lit !== undefined) return JSON.parse(`"${lit}"`) as string;
      const port = ports[Number(index)];
      if (port === undefined) {
        throw new P2prcError(
          "E_INVALID",
          `site.yml: ${whole} but the plugin is handed ${ports.length} port(s) (ports.json NumOfPorts)`,
        );
      }
      return String(port);
    },
  );
}
