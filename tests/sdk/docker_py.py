#!/usr/bin/env python3
"""A script written for a Swarm node, with Docker's Python SDK (docker-py) and nothing
shoal-specific, run against a shoal node's socket by tests/engine_api.rs (inside a lab
node: DOCKER_HOST names the socket). Usage: docker_py.py NODES. Exits non-zero, saying
what went wrong, at the first surprise."""

import sys
import time

import docker
from docker.types import EndpointSpec, Resources, RestartPolicy, ServiceMode, UpdateConfig


def wait(what, check, timeout=40):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    sys.exit(f"timed out waiting for {what}")


def running(service):
    return [t for t in service.tasks() if t["Status"]["State"] == "running"
            and t["DesiredState"] == "running"]


def expect(cond, what):
    if not cond:
        sys.exit(what)


started = int(time.time())
client = docker.from_env(version="auto")
expect(client.swarm.attrs["ID"], f"no swarm: {client.swarm.attrs}")
expect(client.info()["Swarm"]["LocalNodeState"] == "active", "the node is not in a swarm")
expect(len(client.nodes.list()) == int(sys.argv[1]), "not every node is listed")

net = client.networks.create("pynet", driver="overlay", attachable=True, labels={"by": "py"})
web = client.services.create(
    "shoal/demo-web",
    name="pyweb",
    mode=ServiceMode("replicated", replicas=2),
    endpoint_spec=EndpointSpec(ports={8090: 80}),
    networks=["pynet"],
    env=["GREETING=hi"],
    labels={"tier": "web"},
    resources=Resources(mem_limit=64 * 1024 * 1024),
    restart_policy=RestartPolicy(condition="on-failure"),
    update_config=UpdateConfig(parallelism=1, order="start-first", max_failure_ratio=0.4),
)
wait("2 running tasks", lambda: len(running(web)) == 2)
web.reload()
spec = web.attrs["Spec"]
expect(spec["Labels"] == {"tier": "web"}, f"labels: {spec['Labels']}")
expect(spec["UpdateConfig"]["MaxFailureRatio"] == 0.4, f"ratio: {spec['UpdateConfig']}")
expect(web.attrs["Endpoint"]["Ports"][0]["PublishedPort"] == 8090, web.attrs["Endpoint"])
expect(spec["TaskTemplate"]["Resources"]["Limits"]["MemoryBytes"] == 64 * 1024 * 1024, spec)

# The SDK's update sends the whole spec back with its version, as dockerd expects.
web.scale(3)
wait("3 running tasks", lambda: len(running(web)) == 3)
web.reload()
web.update(env=["GREETING=hello"])
wait("the update to complete", lambda: (web.reload() or True)
     and web.attrs.get("UpdateStatus", {}).get("State") == "completed")
web.reload()
env = web.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
expect(env == ["GREETING=hello"], f"env after update: {env}")
expect(len(running(web)) == 3, "replicas kept through the update")

# Logs, with their times.
talker = client.services.create("busybox", ["sh", "-c", "echo from-python; exec sleep 600"],
                                name="pytalk")
lines = wait("the talker's line", lambda: [
    l for l in talker.logs(stdout=True, stderr=True, timestamps=True) if b"from-python" in l])
expect(lines[0][:2] == b"20", f"no time leads {lines[0]!r}")

# dockerd's errors, as the SDK maps them.
try:
    client.services.get("no-such-service")
    sys.exit("an unknown service was found")
except docker.errors.NotFound:
    pass
try:
    client.services.create("shoal/demo-web", name="pyweb")
    sys.exit("a second pyweb was created")
except docker.errors.APIError as e:
    expect(e.status_code == 409, f"a taken name answered {e.status_code}")
try:
    client.swarm.init(advertise_addr="127.0.0.1")
    sys.exit("init inside a swarm succeeded")
except docker.errors.APIError as e:
    expect(e.status_code == 503, f"init inside a swarm answered {e.status_code}")

# The node's dockerd answers the rest of the socket.
expect(isinstance(client.images.list(), list), "images")
expect(isinstance(client.containers.list(all=True), list), "containers")

for s in (web, talker):
    s.remove()
wait("the services gone", lambda: not client.services.list(filters={"name": "py"}))


def removed(network):
    try:
        network.remove()
        return True
    except docker.errors.APIError:
        return False  # its tasks' endpoints are still going


wait("the network removed", lambda: removed(net))
events = list(client.events(since=started, until=int(time.time()) + 1,
                            filters={"type": "service"}, decode=True))
actions = {(e["Action"], e["Actor"]["Attributes"].get("name")) for e in events}
expect(("create", "pyweb") in actions and ("remove", "pyweb") in actions,
       f"service events: {sorted(actions)}")
print("docker-py: ok")
