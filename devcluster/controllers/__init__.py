"""The control plane and the node: scheduler, kubelet, and the controllers ale depends on.

Controllers are level-triggered like kube-controller-manager's: a store change enqueues a key,
one worker reconciles keys in order, and a periodic resync catches time-based transitions
(progress deadlines, job deadlines). The kubelet runs one task per pod.
"""
# The modules of the package (import from them, not from the package):
#   manager.py      ControllerManager: the work queue, the resync, store changes turned into keys
#   base.py         Controller: what every controller shares, and the pods an owner has
#   objects.py      the kinds written and helpers over objects (owner references, conditions)
#   events.py       Recorder, the event recorder
#   kubelet.py      Kubelet, the node
#   one controller per kind: scheduler.py, claims.py, gc.py, namespaces.py, services.py,
#   ingresses.py, quotas.py, replicasets.py, deployments.py, jobs.py
