import { init, setDefaultConfig, viewConfig } from "../../abstractions/index.ts";
import type { Command } from "../context.ts";
import { toJson } from "../io.ts";

/** `--dc` / `--SetDefaultConfig` */
export const setDefaultConfigCommand: Command = async ({ io, json, node }) => {
  const result = await setDefaultConfig(node);
  if (json) return io.out(toJson(result));
  io.out(
    `config: ${result.configFile}${result.added.length ? ` (${result.added.length} default fields written)` : " (complete)"}`,
  );
  io.out(`node id: ${result.nodeId}`);
  if (result.tlsFingerprint) io.out(`tls certificate sha256: ${result.tlsFingerprint}`);
  io.out(`state: ${result.stateDb}`);
};

/** `--vc` / `--ViewConfig`: always JSON. */
export const viewConfigCommand: Command = async ({ io, node }) => {
  io.out(toJson(viewConfig(node)));
};

/** `--whoami` */
export const whoamiCommand: Command = async ({ io, json, node }) => {
  const ctx = init(node);
  if (json)
    return io.out(
      toJson({ id: ctx.identity.nodeId, name: ctx.config.machineName, publicKey: ctx.identity.publicKeyPem }),
    );
  io.out(ctx.identity.nodeId);
};
