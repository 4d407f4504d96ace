import { doctor } from "../../abstractions/index.ts";
import { P2prcError } from "../../core/index.ts";
import type { Command } from "../context.ts";
import { toJson } from "../io.ts";

/** `--doctor`: exit 0 when the engine answers, 1 with the reason when not. */
export const doctorCommand: Command = async ({ io, json, node }) => {
  const report = await doctor(node);
  if (json) {
    io.out(toJson(report));
  } else {
    io.out(`home:    ${report.home}`);
    io.out(`engine:  ${report.engine.host}`);
    if (report.engine.reachable) {
      io.out(
        `status:  reachable, Docker API ${report.engine.apiVersion} (engine ${report.engine.version}, ${report.engine.os}/${report.engine.arch})`,
      );
      io.out(`gpu:     ${report.engine.gpuRuntime ? "nvidia runtime present" : "no GPU runtime"}`);
      io.out(`images:  ${report.engine.images?.length ? report.engine.images.join(", ") : "(none)"}`);
    }
  }
  if (!report.ok) {
    throw new P2prcError("E_ENGINE_UNAVAILABLE", report.engine.error ?? "engine unreachable", {
      hint: report.engine.hint,
    });
  }
};
