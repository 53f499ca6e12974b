"""vCenter-assisted captures: where every VM runs in one query, which hosts vCenter knows (clusters as
groups), and SSH on a host only while esxcap captures there. pyVmomi is imported by `client` alone."""
