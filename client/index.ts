/** client: sends work to other nodes (containers, tracked containers, groups, batch jobs). Not built yet. */
export {};
