"""The platform as a cluster of hosts on one machine: each host a Linux network namespace."""
