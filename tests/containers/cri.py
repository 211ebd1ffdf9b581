"""The calls a kubelet makes on a container runtime's CRI socket (runtime.v1 over gRPC), one per
command, for the containers suite's Kubernetes scenarios. The client modules are generated from
the CRI's api.proto by tests/provision/containers-forky.sh (PYTHONPATH names them).

usage: cri.py SOCKET pull IMAGE                       -> prints the image ref
       cri.py SOCKET runp NAME                        -> prints the pod sandbox id
       cri.py SOCKET create POD NAME IMAGE [ARG...]   -> prints the container id
              (IMAGE may be a checkpoint archive's path or a checkpoint image: a restore)
       cri.py SOCKET start CONTAINER
       cri.py SOCKET pid CONTAINER                    -> the container's process, host pid
       cri.py SOCKET checkpoint CONTAINER ARCHIVE
       cri.py SOCKET rmp POD                          (stops and removes the pod and its containers)
       cri.py SOCKET rmall                            (every pod there is)

Pods: host network, their own pid namespace, no hostname (setting one needs a UTS namespace of the
pod's own, which a host-network pod does not get), cgroups under $CRIU_CET_CGROUP_PARENT, and
$CRIU_CET_REPORTS (a host directory) mounted at /reports. A failed call exits 1 with the gRPC status.
"""

import json
import os
import sys

import grpc

import api_pb2 as cri
import api_pb2_grpc

TIMEOUT = 120  # seconds: a busy 2-core machine


def pod_config(name: str) -> cri.PodSandboxConfig:
    return cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, namespace="criu-cet", uid=name, attempt=0),
        log_directory="",
        linux=cri.LinuxPodSandboxConfig(
            cgroup_parent=f"{os.environ['CRIU_CET_CGROUP_PARENT']}/{name}",
            security_context=cri.LinuxSandboxSecurityContext(
                namespace_options=cri.NamespaceOption(network=cri.NODE, pid=cri.POD, ipc=cri.POD)
            )
        ),
    )


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    socket, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    channel = grpc.insecure_channel(f"unix://{socket}")
    rt = api_pb2_grpc.RuntimeServiceStub(channel)
    img = api_pb2_grpc.ImageServiceStub(channel)
    if cmd == "pull":
        r = img.PullImage(cri.PullImageRequest(image=cri.ImageSpec(image=args[0])), timeout=TIMEOUT)
        print(r.image_ref)
    elif cmd == "runp":
        r = rt.RunPodSandbox(cri.RunPodSandboxRequest(config=pod_config(args[0])), timeout=TIMEOUT)
        print(r.pod_sandbox_id)
    elif cmd == "create":
        pod, name, image, argv = args[0], args[1], args[2], args[3:]
        config = cri.ContainerConfig(
            metadata=cri.ContainerMetadata(name=name, attempt=0),
            image=cri.ImageSpec(image=image),
            args=argv,
            mounts=[cri.Mount(container_path="/reports", host_path=os.environ["CRIU_CET_REPORTS"])],
            log_path="",
        )
        r = rt.CreateContainer(
            cri.CreateContainerRequest(pod_sandbox_id=pod, config=config, sandbox_config=pod_config(pod_name(rt, pod))),
            timeout=TIMEOUT,
        )
        print(r.container_id)
    elif cmd == "start":
        rt.StartContainer(cri.StartContainerRequest(container_id=args[0]), timeout=TIMEOUT)
    elif cmd == "pid":
        r = rt.ContainerStatus(cri.ContainerStatusRequest(container_id=args[0], verbose=True), timeout=TIMEOUT)
        print(json.loads(r.info["info"])["pid"])
    elif cmd == "checkpoint":
        rt.CheckpointContainer(
            cri.CheckpointContainerRequest(container_id=args[0], location=args[1]), timeout=TIMEOUT
        )
    elif cmd in ("rmp", "rmall"):
        pods = args[:1] if cmd == "rmp" else [p.id for p in rt.ListPodSandbox(cri.ListPodSandboxRequest()).items]
        for pod in pods:
            rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=TIMEOUT)
            rt.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=TIMEOUT)
    else:
        sys.exit(__doc__)


def pod_name(rt, pod: str) -> str:
    r = rt.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod), timeout=TIMEOUT)
    return r.status.metadata.name


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as e:
        sys.exit(f"cri {' '.join(sys.argv[2:4])}: {e.code().name}: {e.details()}")
