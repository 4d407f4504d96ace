// The engine contract on the real engine at $DOCKER_HOST (test/run.sh starts one and loads
// p2prc-test/busybox). Fails, never skips, when there is no engine.

import { engineContract } from "./contract.ts";
import { createDockerEngine } from "./docker.ts";

engineContract("docker", () => ({
  engine: createDockerEngine({ host: process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock" }),
  image: "p2prc-test/busybox",
}));
