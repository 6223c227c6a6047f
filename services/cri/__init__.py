"""The CRI service: Kubernetes' runtime.v1 RuntimeService and ImageService on <run_root>/cri.sock.

A second edge beside the gateway, as containerd's CRI plugin is beside its own
API: it composes the node services (image, network, container) over their
gRPC contracts and keeps only its own records (sandboxes and the CRI's view
of their containers) in its own sqlite.
"""
