#!/usr/bin/env python3
"""Run the example clients against real verdict servers (the test command
runs this): the Python client (grpcio) and the Rust client (tonic), each
over TCP, the Unix socket and mutual TLS, deciding a request and a batch.
Also checks what a new user meets: grpcio on the Unix socket without the
authority set is refused with PROTOCOL_ERROR and the server logs the hint;
a client certificate whose SAN is not allowed gets PERMISSION_DENIED. Every
decision log record the servers wrote is checked against
docs/decision-log.schema.json.

Usage: run.py --verdict target/release/verdict --rust-client target/release/verdict-client-example
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FRANK = "arn:aws:iam::111122223333:user/frank"
KEY = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ALLOWED = "spiffe://verdict.test/ns/keys/sa/kms-frontend"
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def venv():
    """A virtual environment with the Python client's requirements and jsonschema."""
    v = ROOT / "target" / "venv-clients"
    py = v / "bin" / "python"
    stamp = v / "requirements.stamp"
    wanted = (ROOT / "examples/clients/python/requirements.txt").read_text() + "jsonschema\n"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(v)], check=True)
    if not stamp.exists() or stamp.read_text() != wanted:
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "-r", str(ROOT / "examples/clients/python/requirements.txt"), "jsonschema"], check=True)
        stamp.write_text(wanted)
    return py


def generate(py, out):
    """The Python stubs, generated from the repository's proto file."""
    subprocess.run([str(py), "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}", f"--python_out={out}",
                    f"--grpc_python_out={out}", "verdict/v1/authorizer.proto"], check=True)


def certificates(d):
    """A CA; a server certificate for localhost/127.0.0.1; a client with the
    allowed SPIFFE ID and one with another (the OpenSSL command line)."""

    def run(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=d)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=clients-ca")

    def issue(name, san, usage):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext")

    issue("server", "DNS:localhost,IP:127.0.0.1", "serverAuth")
    issue("frontend", f"URI:{ALLOWED}", "clientAuth")
    issue("stranger", "URI:spiffe://verdict.test/ns/other/sa/batch", "clientAuth")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`verdict serve` on the example bundle, with a decision log."""

    def __init__(self, verdict, work, name, env):
        self.log = work / f"{name}.decisions.jsonl"
        self.stderr_path = work / f"{name}.stderr"
        self.port = free_port()
        self.sock = work / f"{name}.sock"
        full = dict(os.environ)
        full.pop("RUST_LOG", None)
        full.update({"VERDICT_DECISION_LOG": str(self.log), "VERDICT_LOG_FORMAT": "json",
                     "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={name}"})
        full.update(env)
        self.stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            [verdict, "serve", "--bundle", str(ROOT / "examples/bundles/kms"),
             "--listen", f"127.0.0.1:{self.port}", "--uds", str(self.sock)],
            env=full, stdout=subprocess.DEVNULL, stderr=self.stderr)
        deadline = time.time() + 30
        while "verdict is serving" not in self.stderr_path.read_text():
            if self.proc.poll() is not None or time.time() > deadline:
                sys.exit(f"{name}: the server did not start:\n{self.stderr_path.read_text()}")
            time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.stderr.close()

    def server_log(self):
        return [json.loads(line) for line in self.stderr_path.read_text().splitlines() if line.strip()]


def run_client(cmd, env=None, expect_fail=False):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    if (out.returncode != 0) != expect_fail:
        sys.exit(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout}{out.stderr}")
    return out.stdout


def check_decisions(label, lines, want):
    """`want`: the decisions expected, in order; each has a UUIDv7 id."""
    got = []
    for line in lines:
        if line.startswith("{"):
            d = json.loads(line)
            if "health" in d:
                assert d["health"] == "SERVING", (label, d)
                continue
            got.append((d["decision"], d["decision_id"]))
        else:
            decision, decision_id, *_ = line.split(" ")
            got.append((decision, decision_id))
    assert [g[0] for g in got] == want, (label, got)
    for _, decision_id in got:
        assert UUID7.match(decision_id), (label, decision_id)
    print(f"  {label}: {', '.join(g[0] for g in got)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--verdict", required=True)
    ap.add_argument("--rust-client", required=True)
    args = ap.parse_args()
    verdict = str(Path(args.verdict).resolve())
    rust = str(Path(args.rust_client).resolve())
    py = venv()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        gen = work / "gen"
        gen.mkdir()
        generate(py, gen)
        certificates(work)
        plain = Server(verdict, work, "plain", {})
        mtls = Server(verdict, work, "mtls", {
            "VERDICT_TLS_CERT": str(work / "server.pem"), "VERDICT_TLS_KEY": str(work / "server.key"),
            "VERDICT_TLS_CLIENT_CA": str(work / "ca.pem"), "VERDICT_TLS_ALLOWED_CLIENTS": f"uri:{ALLOWED}"})
        try:
            ask = ["--principal", FRANK, "--action", "kms:Encrypt", "--resource", KEY]
            tls = ["--ca", str(work / "ca.pem"), "--cert", str(work / "frontend.pem"),
                   "--key", str(work / "frontend.key")]
            where = {
                "tcp": ["--tcp", f"127.0.0.1:{plain.port}"],
                "unix socket": ["--uds", str(plain.sock)],
                "mutual TLS": ["--tcp", f"localhost:{mtls.port}", *tls],
            }
            want = ["DECISION_ALLOW", "DECISION_ALLOW", "DECISION_ALLOW"]
            pyenv = dict(os.environ, VERDICT_PY_GEN=str(gen))
            client_py = str(ROOT / "examples/clients/python/client.py")
            print("Python client (grpcio):")
            for label, flags in where.items():
                out = run_client([str(py), client_py, *flags, *ask, "--batch", "--health"], env=pyenv)
                check_decisions(label, out.splitlines(), want)
            out = run_client([str(py), client_py, *where["tcp"], *ask, "--explain",
                              "--context", "kms:EncryptionContext:Department=IT"], env=pyenv)
            check_decisions("tcp, explained, with context", out.splitlines(), ["DECISION_ALLOW"])
            print("Rust client (tonic):")
            for label, flags in where.items():
                out = run_client([rust, *flags, *ask, "--batch"])
                check_decisions(label, out.splitlines(), want)

            print("What a new user meets:")
            out = run_client([str(py), client_py, "--uds", str(plain.sock), "--no-authority", *ask],
                             env=pyenv, expect_fail=True)
            assert "RST_STREAM" in out or "PROTOCOL_ERROR" in out or "INTERNAL" in out, out
            deadline = time.time() + 10
            while not any("PROTOCOL_ERROR" in line.get("msg", "") for line in plain.server_log()):
                assert time.time() < deadline, plain.stderr_path.read_text()
                time.sleep(0.05)
            hint = next(line for line in plain.server_log() if "PROTOCOL_ERROR" in line.get("msg", ""))
            assert "grpc.default_authority" in hint["hint"], hint
            print("  grpcio on the socket without the authority: refused, and the server log says why")
            stranger = ["--tcp", f"localhost:{mtls.port}", "--ca", str(work / "ca.pem"),
                        "--cert", str(work / "stranger.pem"), "--key", str(work / "stranger.key")]
            out = run_client([str(py), client_py, *stranger, *ask], env=pyenv, expect_fail=True)
            assert json.loads(out)["error"] == "PERMISSION_DENIED", out
            print("  a client certificate not in tls_allowed_clients: PERMISSION_DENIED")
        finally:
            plain.stop()
            mtls.stop()

        check = (f"import json, sys, jsonschema\n"
                 f"schema = json.load(open({str(ROOT / 'docs/decision-log.schema.json')!r}))\n"
                 f"jsonschema.Draft202012Validator.check_schema(schema)\n"
                 f"v = jsonschema.Draft202012Validator(schema)\n"
                 f"n = 0\n"
                 f"for path in sys.argv[1:]:\n"
                 f"    for line in open(path):\n"
                 f"        record = json.loads(line)\n"
                 f"        errors = sorted(v.iter_errors(record), key=str)\n"
                 f"        if errors:\n"
                 f"            sys.exit(f'{{path}}: {{errors[0].message}} at {{list(errors[0].path)}}')\n"
                 f"        n += 1\n"
                 f"print(n)\n")
        counted = subprocess.run([str(py), "-c", check, str(plain.log), str(mtls.log)],
                                 capture_output=True, text=True)
        if counted.returncode != 0:
            sys.exit(counted.stderr or counted.stdout)
        records = [json.loads(line) for p in (plain.log, mtls.log) for line in p.read_text().splitlines()]
        assert any("explanation" in r for r in records), "no explained record"
        tls_callers = {r.get("caller") for r in map(json.loads, mtls.log.read_text().splitlines())}
        assert tls_callers == {f"uri:{ALLOWED}"}, tls_callers
        assert all(r["labels"]["service.instance.id"] in ("plain", "mtls") for r in records)
        print(f"decision log: {counted.stdout.strip()} records valid against docs/decision-log.schema.json")


if __name__ == "__main__":
    main()
