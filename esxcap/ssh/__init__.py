"""The SSH edge: transports (asyncssh, paramiko), sessions across hosts, discovery and cleanup."""
