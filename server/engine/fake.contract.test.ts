// The engine contract on FakeEngine: the fake must do what the Docker engine does (docker.contract.test.ts).
import { engineContract } from "./contract.ts";
import { FakeEngine } from "./fake.ts";

engineContract("fake", () => ({ engine: new FakeEngine(), image: "p2prc-test/busybox" }));
