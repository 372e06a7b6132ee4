"""Run envbuild environments on Kubernetes (`envbuild up --runner kubernetes`).

`manifests` builds the objects as plain dicts (no dependency); `runner` applies them through the
official `kubernetes` client (optional extra ``envbuild[kubernetes]``, imported lazily), waits for
the Pod, syncs the project directory and forwards SSH/Jupyter to 127.0.0.1 without a Service.
See docs/kubernetes.md.
"""
