#!/usr/bin/env python3
"""Check the Kubernetes manifests beyond their schema: the bundle ConfigMap
is the example bundle as `verdict bundle build` makes it (the build is
deterministic), and verdict runs as each manifest configures it.

For every container running the verdict image, take its args and
environment as written (fieldRef values and `$(VAR)` references filled in),
lay out its `verdict-bundle` ConfigMap volume as the kubelet would (the
ConfigMap's keys mapped to the volume's item paths, behind a `..data`
symlink), move its socket directory and TCP ports to a scratch directory and
free loopback ports, and start the real binary: it must come up and answer
`verdict health` with SERVING (on the socket if the manifest has one, else on
TCP), then stop cleanly on SIGTERM. Settings that verdict refuses, a bundle
layout it cannot read or probes that would fail show up here.

  python3 deploy/kubernetes/check.py [--verdict target/release/verdict]

The manifests are the overlays as `kubectl kustomize` renders them. Also
checks deploy/Dockerfile: base images pinned by exact version and digest,
dependencies built in a layer before the sources, a stripped binary. Run
by the test command after `kubernetes-validate` of the rendered overlays.
"""

import argparse
import base64
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


OVERLAYS = ("overlays/sidecar", "overlays/central")


def render(overlay):
    """An overlay as `kubectl kustomize` renders it."""
    out = subprocess.run(["kubectl", "kustomize", str(HERE / overlay)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"kubectl kustomize {overlay}: {out.stderr}")
    return out.stdout


def documents():
    """Every rendered object, with the overlay it comes from."""
    for overlay in OVERLAYS:
        for doc in yaml.safe_load_all(render(overlay)):
            if doc:
                yield overlay, doc


def check_dockerfile():
    """Every base image of deploy/Dockerfile names an exact version and its
    digest (no floating tag), dependencies are built in a layer of their
    own before the sources are copied, and the binary is stripped."""
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    images = re.findall(r"^FROM\s+(\S+)", text, re.M)
    problems = []
    for image in images:
        name, _, digest = image.partition("@")
        repo, _, tag = name.rpartition(":") if ":" in name.rpartition("/")[2] else (name, "", "")
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            problems.append(f"Dockerfile: {image} is not pinned by digest")
        if not tag or tag == "latest":
            problems.append(f"Dockerfile: {image} names no version")
        elif tag[0].isdigit() and not re.match(r"\d+\.\d+\.\d+", tag):
            problems.append(f"Dockerfile: {image}: {tag} is not an exact version")
    deps = text.find("cargo build")
    sources = text.find("COPY src ")
    if deps < 0 or sources < 0 or deps > sources:
        problems.append("Dockerfile: dependencies are not built before the sources are copied")
    if "CARGO_PROFILE_RELEASE_STRIP=symbols" not in text:
        problems.append("Dockerfile: the binary is not stripped (CARGO_PROFILE_RELEASE_STRIP=symbols)")
    if not problems:
        print(f"ok: deploy/Dockerfile pins its {len(images)} base images by version and digest, "
              "builds dependencies in their own layer, strips the binary")
    return problems


def configmaps():
    return {doc["metadata"]["name"]: doc for _, doc in documents() if doc.get("kind") == "ConfigMap"}


def lay_out(configmap, items, target):
    """A ConfigMap volume as the kubelet writes it: files under a timestamped
    directory, `..data` pointing at it, top-level names linked through it."""
    stamp = target / "..2026_11_28_00_00_00.000000001"
    for item in items:
        path = stamp / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        if item["key"] in configmap.get("binaryData", {}):
            path.write_bytes(base64.b64decode(configmap["binaryData"][item["key"]]))
        else:
            path.write_text(configmap["data"][item["key"]])
    (target / "..data").symlink_to(stamp.name)
    for top in sorted({item["path"].split("/")[0] for item in items}):
        (target / top).symlink_to(f"..data/{top}")


def tls_secret(target):
    """A TLS Secret as cert-manager fills one: tls.crt and tls.key (for
    localhost and 127.0.0.1) and ca.crt, made here with the OpenSSL command
    line for a throwaway CA."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=target)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=check-ca")
    run("req", *ec, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=verdict")
    (target / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run(
        "x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "tls.crt", "-days", "1", "-extfile", "san.ext",
    )


def env_of(container, pod_name):
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), ""), e["value"])
        elif "fieldRef" in e.get("valueFrom", {}):
            value = {"metadata.name": pod_name, "metadata.namespace": "default"}.get(
                e["valueFrom"]["fieldRef"]["fieldPath"], "x"
            )
        else:
            value = ""
        env[e["name"]] = value
    return env


def check_container(overlay, workload, container, volumes, maps, verdict):
    name = f"{overlay}: {workload}/{container['name']}"
    with tempfile.TemporaryDirectory(prefix="verdict-manifest-") as tmp:
        tmp = Path(tmp)
        mounts = {}
        for m in container.get("volumeMounts", []):
            vol = volumes[m["name"]]
            local = tmp / m["name"]
            local.mkdir()
            if "configMap" in vol:
                cm = maps[vol["configMap"]["name"]]
                keys = [*cm.get("data", {}), *cm.get("binaryData", {})]
                items = vol["configMap"].get("items") or [{"key": k, "path": k} for k in keys]
                lay_out(cm, items, local)
            elif "secret" in vol:
                tls_secret(local)
            mounts[m["mountPath"]] = local

        def local_path(p):
            if not p.startswith("/"):
                return p
            for mount, local in mounts.items():
                if p == mount or p.startswith(mount + "/"):
                    return str(local) + p[len(mount):]
            return p

        args = [local_path(a) for a in container.get("args", [])]
        ports = {}

        def local_addr(a):
            host, _, port = a.rpartition(":")
            if host in ("0.0.0.0", "127.0.0.1", "[::]"):
                ports[a] = free_port()
                return f"127.0.0.1:{ports[a]}"
            return a

        args = [local_addr(a) if re.fullmatch(r"[\d.\[\]:]+:\d+", a) else a for a in args]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VERDICT_", "OTEL_"))}
        env.update({k: local_path(v) for k, v in env_of(container, "verdict-0").items()})
        # Nothing listens there: exports fail quietly, as with a collector down.
        if "OTEL_EXPORTER_OTLP_ENDPOINT" in env:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
        proc = subprocess.Popen(
            [verdict, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            if "--uds" in args:
                target = ["--uds", args[args.index("--uds") + 1]]
            else:
                target = ["--addr", local_addr_of(args)]
            deadline = time.time() + 30
            while True:
                if proc.poll() is not None:
                    return f"{name}: verdict exited {proc.returncode}: {proc.stderr.read()}"
                probe = subprocess.run([verdict, "health", *target], capture_output=True, text=True)
                if probe.returncode == 0 and probe.stdout.strip() == "SERVING":
                    break
                if time.time() > deadline:
                    return f"{name}: `verdict health` never answered SERVING: {probe.stderr.strip()}"
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
            if code != 0:
                return f"{name}: exit status {code} after SIGTERM: {proc.stderr.read()}"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(f"ok: {name} starts, answers SERVING and stops cleanly")
    return None


def local_addr_of(args):
    return args[args.index("--listen") + 1] if "--listen" in args else "127.0.0.1:50051"


def check_bundle_configmap(maps, verdict):
    """ConfigMap verdict-bundle holds exactly the archive `verdict bundle
    build` makes of the example bundle."""
    cm = maps.get("verdict-bundle")
    if cm is None:
        return "no ConfigMap verdict-bundle"
    if set(cm.get("data", {})) or set(cm.get("binaryData", {})) != {"bundle.tar.gz"}:
        return "ConfigMap verdict-bundle must hold one key, binaryData bundle.tar.gz"
    with tempfile.TemporaryDirectory(prefix="verdict-bundle-") as tmp:
        out = Path(tmp) / "bundle.tar.gz"
        subprocess.run(
            [verdict, "bundle", "build", str(ROOT / "examples" / "bundles" / "kms"), "-o", str(out)],
            check=True,
            capture_output=True,
        )
        if base64.b64decode(cm["binaryData"]["bundle.tar.gz"]) != out.read_bytes():
            return (
                "base/bundle-configmap.yaml is not the example bundle as `verdict bundle build` makes it; "
                "rebuild it (see the comment at its top)"
            )
    print("ok: base/bundle-configmap.yaml is the example bundle's archive")
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verdict", default=str(ROOT / "target" / "release" / "verdict"))
    args = ap.parse_args()
    maps = configmaps()
    problems, checked = [], 0
    problem = check_bundle_configmap(maps, args.verdict)
    if problem:
        problems.append(problem)
    problems.extend(check_dockerfile())
    for overlay, doc in documents():
        if doc.get("kind") not in ("Deployment", "StatefulSet", "DaemonSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod.get("initContainers", []) + pod.get("containers", []):
            if not container["image"].startswith("verdict:"):
                continue
            checked += 1
            problem = check_container(overlay, doc["metadata"]["name"], container, volumes, maps, args.verdict)
            if problem:
                problems.append(problem)
    if checked == 0:
        problems.append("no manifest runs the verdict image")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
