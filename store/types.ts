/** A published port: container port → host port. */
export interface PortMapping {
  internal: number;
  external: number;
  /**
   * Where the port is published when it is not the node's own address: a swarm task's port published
   * on its machine only (no routing mesh), reached at that machine's address.
   */
  host?: string | undefined;
}

/** How to log into a container over SSH. */
export interface SshInfo {
  port: number;
  user: string;
  command: string;
}

/** A task container as the server records it. */
export interface ContainerRecord {
  id: string;
  name: string;
  image: string;
  /** Node id of the caller that created it. */
  owner: string;
  createdAt: number;
  /** Lease end (ms since epoch); the server removes the container after it. */
  expiresAt: number;
  cpus: number;
  memoryMb: number;
  gpu: boolean;
  ports: PortMapping[];
  ssh?: SshInfo | undefined;
}
