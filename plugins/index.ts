/** plugins: extensions run against containers (P2PRC's Ansible plugins). Not built yet. */
export {};
