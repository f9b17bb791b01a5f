#!/usr/bin/env python3
"""Load test of `verdict serve` on loopback with h2load.

Builds the release binary, starts servers on 127.0.0.1 (and a Unix socket),
and drives them with h2load (Debian package nghttp2-client, installed if
missing) using pre-encoded gRPC request bodies:

  (a) grpc.health.v1.Health/Check: the no-work baseline of the same server;
  (b) Authorize with one repeated request (decision cache hits);
  (c) Authorize with the decision cache off (every call evaluated);
  (d) BatchAuthorize of 100 distinct requests (cache off).

These machines are shared and swing from run to run, so every comparison is
made in interleaved pairs (A B B A, repeated) and reported as the median of
the per-pair ratios; absolute rates are shown for orientation only. Each
comparison is made on the thread_per_core (default), multi_thread and
current_thread runtimes; the Unix socket is compared with TCP; tracing at 100% exporting to
an OTLP sink with tracing off (both servers exporting metrics), all
telemetry on with none, and TLS on the TCP listener (a throwaway CA made
with openssl) with plaintext.

Latency at about half of the maximum rate is measured with a steady
open-loop load from `load_support pace` (what is due released every 100 µs,
spread over as many HTTP/2 connections as h2load opens to find the
maximum), because
h2load's `--rps` releases requests in bursts on its 1 ms timer tick, which
measures the bursts rather than the server. The pacer is a lean HTTP/2
client (benches/load/pace.rs): a general client spends as much CPU per call
as the server, and on 2 shared cores its own stalls would set the tail.

h2load counts HTTP status only, so each server is also checked with a real
gRPC client (grpc-status OK and the expected answers) after its runs, and the
pacer checks the grpc-status of every call: calls the server sheds at its
concurrency limit are counted in the table, any other failure ends the test.

Usage: python3 benches/load/run.py [--pairs 6] [--duration 3s] [--quick]
                                   [--only hits,misses,...] [--json FILE]
                                   [--against OTHER_BUILD/verdict]
Prints the Markdown tables BENCHMARKS.md shows.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VERDICT = ROOT / "target" / "release" / "verdict"
SUPPORT = ROOT / "target" / "release" / "examples" / "load_support"

HEALTH = "/grpc.health.v1.Health/Check"
AUTHORIZE = "/verdict.v1.Authorizer/Authorize"
BATCH = "/verdict.v1.Authorizer/BatchAuthorize"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def ensure_h2load():
    if shutil.which("h2load"):
        return
    log("h2load not found: installing Debian's nghttp2-client")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "nghttp2-client"], check=True, env=env)
    if not shutil.which("h2load"):
        sys.exit("h2load is still missing after installing nghttp2-client")


def build():
    log("building the release binary and the load helpers")
    subprocess.run(
        ["cargo", "build", "--release", "--locked", "--bin", "verdict", "--example", "load_support"],
        cwd=ROOT,
        check=True,
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `verdict serve` process with the given VERDICT_*/OTEL_* settings."""

    def __init__(self, name, workdir, env, binary=None, tls=None, client=None):
        self.name = name
        # The CA file clients trust, for a server with TLS on, and the
        # client certificate and key a mutual-TLS server asks for.
        self.tls = tls
        self.client = client
        self.port = free_port()
        self.uds = Path(workdir) / f"{name}.sock"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("VERDICT_", "OTEL_"))}
        full_env.update(env)
        full_env["RUST_LOG"] = "warn"
        self.log_path = Path(workdir) / f"{name}.log"
        self.proc = subprocess.Popen(
            [str(binary or VERDICT), "serve", "--listen", f"127.0.0.1:{self.port}", "--uds", str(self.uds)],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.log_path, "w"),
        )
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                sys.exit(f"server {name} exited: {self.log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                if time.time() > deadline:
                    sys.exit(f"server {name} did not start")
                time.sleep(0.05)

    @property
    def tcp(self):
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def check(self, bodies, count):
        if self.tls:
            # The gRPC checker speaks plaintext; a TLS server answers its
            # health check over TLS (h2load checks every call's HTTP status).
            identity = ["--tls-cert", self.client[0], "--tls-key", self.client[1]] if self.client else []
            out = subprocess.run(
                [str(VERDICT), "health", "--addr", f"127.0.0.1:{self.port}", "--tls-ca", self.tls,
                 "--tls-server-name", "localhost", *identity],
                capture_output=True, text=True,
            )
            if out.returncode != 0:
                sys.exit(f"TLS health check of {self.name} failed:\n{out.stdout}\n{out.stderr}")
            return {"tls_health": out.stdout.strip()}
        out = subprocess.run(
            [str(SUPPORT), "check", "--target", f"127.0.0.1:{self.port}", "--bodies", str(bodies), "--count", str(count)],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            sys.exit(f"gRPC check of {self.name} failed:\n{out.stdout}\n{out.stderr}")
        return json.loads(out.stdout)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# The SAN of the load client's certificate, allowed by the mutual-TLS server.
LOAD_CLIENT = "spiffe://load.test/ns/keys/sa/load-client"


def tls_files(workdir):
    """A throwaway CA and a server certificate for localhost/127.0.0.1
    (the OpenSSL command line); returns (ca, cert, key) paths."""
    d = Path(workdir)

    def run(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=d)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=load-ca")
    run("req", *ec, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=verdict")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "tls.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "tls.pem", "-days", "1", "-extfile", "san.ext")
    # A client certificate for the mutual-TLS server.
    run("req", *ec, "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=load-client")
    (d / "client.ext").write_text(f"subjectAltName=URI:{LOAD_CLIENT}\nextendedKeyUsage=clientAuth\n")
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "client.pem", "-days", "1", "-extfile", "client.ext")
    return str(d / "ca.pem"), str(d / "tls.pem"), str(d / "tls.key")


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * (len(sorted_values) - 1)))))
    return sorted_values[k]


def h2load(base, path, body, args, uds=None):
    """One h2load run; returns requests/s and latency percentiles (µs)."""
    with tempfile.NamedTemporaryFile(suffix=".log") as lf:
        cmd = [
            "h2load",
            "-t", "1",
            "-c", str(args.connections),
            "-m", str(args.streams),
            "-D", str(args.duration),
            "--warm-up-time", f"{args.warmup}",
            "-H", "content-type: application/grpc",
            "-H", "te: trailers",
            "-d", str(body),
            "--log-file", lf.name,
        ]
        if uds is not None:
            cmd += ["-B", f"unix:{uds}", f"http://localhost{path}"]
        else:
            cmd += [base + path]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"h2load failed: {' '.join(cmd)}\n{out.stdout}\n{out.stderr}")
        rate = None
        failed = None
        for line in out.stdout.splitlines():
            line = line.strip()
            if line.startswith("finished in"):
                rate = float(line.split(",")[1].strip().split()[0])
            if line.startswith("requests:"):
                parts = {p.strip().split(" ", 1)[1]: int(p.strip().split(" ", 1)[0]) for p in line[len("requests:"):].split(",")}
                failed = parts.get("failed", 0) + parts.get("errored", 0) + parts.get("timeout", 0)
                done = parts.get("succeeded", 0)
        if rate is None or failed is None:
            sys.exit(f"cannot read h2load output:\n{out.stdout}")
        if failed or done == 0:
            sys.exit(f"h2load saw {failed} failed requests on {path}:\n{out.stdout}")
        lat = []
        for row in Path(lf.name).read_text().splitlines():
            cols = row.split("\t")
            if len(cols) >= 3:
                if cols[1] == "0":
                    # A stream still open when the measured period ended.
                    continue
                if cols[1] != "200":
                    sys.exit(f"HTTP status {cols[1]} on {path}")
                lat.append(int(cols[2]))
        lat.sort()
        return {
            "rps": rate,
            "p50_us": percentile(lat, 50),
            "p90_us": percentile(lat, 90),
            "p99_us": percentile(lat, 99),
            "requests": len(lat),
        }


def pace(server, path, body, rate, args):
    """A steady open-loop load (load_support pace): a 2 s warm-up at the same
    rate (a server's first seconds of a new kind of load are slower), then
    the measured run. Calls the server sheds (RESOURCE_EXHAUSTED: more calls
    in flight than its concurrency limit, which a stall of either side on a
    shared machine can cause) are counted and reported, and so are calls
    the pacer held back when they were due (the connection at the server's
    concurrent-stream limit or out of flow-control window); any other
    failure ends the test."""
    result = None
    for duration in (2.0, float(str(args.duration).rstrip("s"))):
        out = subprocess.run(
            [str(SUPPORT), "pace", "--target", f"127.0.0.1:{server.port}", "--path", path, "--body", str(body),
             "--rate", f"{rate:.0f}", "--duration", str(duration), "--connections", str(args.connections),
             "--tick-us", "100"],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            sys.exit(f"pace failed on {path}:\n{out.stdout}\n{out.stderr}")
        result = json.loads(out.stdout)
        if result["errors"]:
            sys.exit(f"pace saw {result['errors']} failed calls on {path}: {result['first_error']}")
    return result


def pace_closed(server, path, body, args):
    """load_support pace in closed loop: a 1 s warm-up, then the measured
    run; over mutual TLS when the server has a client certificate set."""
    tls = []
    if server.tls:
        tls = ["--tls-ca", server.tls]
        if server.client:
            tls += ["--tls-cert", server.client[0], "--tls-key", server.client[1]]
    result = None
    for duration in (1.0, float(str(args.duration).rstrip("s"))):
        out = subprocess.run(
            [str(SUPPORT), "pace", "--target", f"127.0.0.1:{server.port}", "--path", path, "--body", str(body),
             "--rate", "1", "--duration", str(duration), "--connections", str(args.connections),
             "--closed", str(args.streams), *tls],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            sys.exit(f"pace --closed failed on {server.name}:\n{out.stdout}\n{out.stderr}")
        result = json.loads(out.stdout)
        if result["errors"] or result["shed"]:
            sys.exit(f"pace --closed on {server.name}: {result['errors']} failed, {result['shed']} shed: "
                     f"{result['first_error']}")
    return result


def pairs(name, a, b, n):
    """Interleave A B B A n times; return the median of the ratios B/A."""
    ratios, runs_a, runs_b = [], [], []
    for i in range(n):
        ra1 = a()
        rb1 = b()
        rb2 = b()
        ra2 = a()
        ratios.append((rb1["rps"] / ra1["rps"] + rb2["rps"] / ra2["rps"]) / 2)
        runs_a += [ra1, ra2]
        runs_b += [rb1, rb2]
        log(f"  {name} pair {i + 1}/{n}: ratio {ratios[-1]:.3f} ({ra1['rps']:.0f}, {rb1['rps']:.0f}, {rb2['rps']:.0f}, {ra2['rps']:.0f} req/s)")
    return {
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
        "a_rps_median": statistics.median(r["rps"] for r in runs_a),
        "b_rps_median": statistics.median(r["rps"] for r in runs_b),
        "a_p50_us_median": statistics.median(r["p50_us"] for r in runs_a),
        "b_p50_us_median": statistics.median(r["p50_us"] for r in runs_b),
        "a_p99_us_median": statistics.median(r["p99_us"] for r in runs_a),
        "b_p99_us_median": statistics.median(r["p99_us"] for r in runs_b),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=6, help="A B B A pairs per comparison (default 6)")
    ap.add_argument("--duration", default="3s", help="measured time per run (h2load -D)")
    ap.add_argument("--warmup", default="1s", help="warm-up per run (h2load --warm-up-time)")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--streams", type=int, default=32, help="concurrent streams per connection")
    ap.add_argument("--quick", action="store_true", help="one pair of 1 s runs: a smoke test of the script")
    ap.add_argument("--json", default=None, help="write the raw numbers here")
    ap.add_argument("--only", default=None, help="comma-separated comparisons to run (no table), e.g. hits,misses")
    ap.add_argument(
        "--against",
        default=None,
        help="another build's verdict binary: compare this build with it (Authorize, cache hits and cache off, "
        "thread_per_core) and print those two comparisons only",
    )
    args = ap.parse_args()
    if args.quick:
        args.pairs, args.duration, args.warmup = 1, "1s", "0s"

    ensure_h2load()
    build()
    work = Path(tempfile.mkdtemp(prefix="verdict-load-"))
    bodies = work / "bodies"
    subprocess.run([str(SUPPORT), "bodies", str(bodies)], check=True)
    health, single, batch = bodies / "health.bin", bodies / "authorize.bin", bodies / "batch100.bin"

    sinks = {}
    for name in ("tpc_traced", "traced", "ct_traced"):
        sink = subprocess.Popen([str(SUPPORT), "otlp-sink"], stdout=subprocess.PIPE, text=True)
        sinks[name] = (sink, sink.stdout.readline().split()[1])

    servers = {}
    results = {}
    try:
        servers["tpc"] = Server("tpc", work, {"VERDICT_RUNTIME": "thread_per_core"})
        servers["tpc_uncached"] = Server(
            "tpc_uncached", work, {"VERDICT_RUNTIME": "thread_per_core", "VERDICT_CACHE_MAX_ENTRIES": "0"}
        )
        servers["cached"] = Server("cached", work, {"VERDICT_RUNTIME": "multi_thread"})
        servers["uncached"] = Server("uncached", work, {"VERDICT_RUNTIME": "multi_thread", "VERDICT_CACHE_MAX_ENTRIES": "0"})
        servers["current_thread"] = Server("current_thread", work, {"VERDICT_RUNTIME": "current_thread"})
        servers["current_thread_uncached"] = Server(
            "current_thread_uncached", work, {"VERDICT_RUNTIME": "current_thread", "VERDICT_CACHE_MAX_ENTRIES": "0"}
        )
        traced_metrics = {}
        for name, runtime in (
            ("tpc_traced", "thread_per_core"),
            ("traced", "multi_thread"),
            ("ct_traced", "current_thread"),
        ):
            traced_metrics[name] = free_port()
            servers[name] = Server(
                name,
                work,
                {
                    "VERDICT_RUNTIME": runtime,
                    "VERDICT_CACHE_MAX_ENTRIES": "0",
                    "VERDICT_METRICS_LISTEN": f"127.0.0.1:{traced_metrics[name]}",
                    "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{sinks[name][1]}",
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                    "OTEL_TRACES_SAMPLER": "always_on",
                    "OTEL_METRIC_EXPORT_INTERVAL": "1000",
                },
            )
            # The same server with tracing off: metrics over OTLP and on
            # /metrics as above, no trace endpoint.
            servers[f"{name}_off"] = Server(
                f"{name}_off",
                work,
                {
                    "VERDICT_RUNTIME": runtime,
                    "VERDICT_CACHE_MAX_ENTRIES": "0",
                    "VERDICT_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
                    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://{sinks[name][1]}",
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                    "OTEL_METRIC_EXPORT_INTERVAL": "1000",
                },
            )
        ca, cert, key = tls_files(work)
        servers["tpc_tls"] = Server(
            "tpc_tls", work,
            {"VERDICT_RUNTIME": "thread_per_core", "VERDICT_CACHE_MAX_ENTRIES": "0",
             "VERDICT_TLS_CERT": cert, "VERDICT_TLS_KEY": key},
            tls=ca,
        )
        client = (str(Path(ca).parent / "client.pem"), str(Path(ca).parent / "client.key"))
        servers["tpc_mtls"] = Server(
            "tpc_mtls", work,
            {"VERDICT_RUNTIME": "thread_per_core", "VERDICT_CACHE_MAX_ENTRIES": "0",
             "VERDICT_TLS_CERT": cert, "VERDICT_TLS_KEY": key, "VERDICT_TLS_CLIENT_CA": ca,
             "VERDICT_TLS_ALLOWED_CLIENTS": f"uri:{LOAD_CLIENT}"},
            tls=ca, client=client,
        )
        if args.against:
            old = Path(args.against).resolve()
            servers["old"] = Server("old", work, {"VERDICT_RUNTIME": "thread_per_core"}, binary=old)
            servers["old_uncached"] = Server(
                "old_uncached", work, {"VERDICT_RUNTIME": "thread_per_core", "VERDICT_CACHE_MAX_ENTRIES": "0"}, binary=old
            )
            args.only = "against_hits,against_misses"
        for s in servers.values():
            s.check(bodies, 5)

        def run(server, path, body, uds=False):
            s = servers[server]
            return lambda: h2load(s.tcp, path, body, args, uds=s.uds if uds else None)

        def closed(server, path, body):
            """A closed-loop run of load_support pace (h2load cannot present a
            client certificate): --streams calls in flight on each of
            --connections connections, over the server's TLS when it has it."""
            s = servers[server]
            return lambda: pace_closed(s, path, body, args)

        results.update({"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "settings": vars(args)})
        n = args.pairs
        comparisons = [
            ("tpc_hits", "Authorize (cache hits) against Health/Check, thread_per_core runtime",
             run("tpc", HEALTH, health), run("tpc", AUTHORIZE, single)),
            ("tpc_misses", "Authorize (cache off) against Health/Check, thread_per_core runtime",
             run("tpc_uncached", HEALTH, health), run("tpc_uncached", AUTHORIZE, single)),
            ("tpc_batch", "BatchAuthorize of 100 (cache off) against Health/Check, thread_per_core runtime",
             run("tpc_uncached", HEALTH, health), run("tpc_uncached", BATCH, batch)),
            ("tpc_vs_mt", "thread_per_core against multi_thread runtime, Authorize (cache off)",
             run("uncached", AUTHORIZE, single), run("tpc_uncached", AUTHORIZE, single)),
            ("tpc_vs_ct", "thread_per_core against current_thread runtime, Authorize (cache off)",
             run("current_thread_uncached", AUTHORIZE, single), run("tpc_uncached", AUTHORIZE, single)),
            ("hits", "Authorize (cache hits) against Health/Check, multi_thread runtime",
             run("cached", HEALTH, health), run("cached", AUTHORIZE, single)),
            ("misses", "Authorize (cache off) against Health/Check, multi_thread runtime",
             run("uncached", HEALTH, health), run("uncached", AUTHORIZE, single)),
            ("ct_hits", "Authorize (cache hits) against Health/Check, current_thread runtime",
             run("current_thread", HEALTH, health), run("current_thread", AUTHORIZE, single)),
            ("ct_misses", "Authorize (cache off) against Health/Check, current_thread runtime",
             run("current_thread_uncached", HEALTH, health), run("current_thread_uncached", AUTHORIZE, single)),
            ("batch", "BatchAuthorize of 100 (cache off) against Health/Check, multi_thread runtime",
             run("uncached", HEALTH, health), run("uncached", BATCH, batch)),
            ("ct_batch", "BatchAuthorize of 100 (cache off) against Health/Check, current_thread runtime",
             run("current_thread_uncached", HEALTH, health), run("current_thread_uncached", BATCH, batch)),
            ("flavor_hits", "current_thread against multi_thread runtime, Authorize (cache hits)",
             run("cached", AUTHORIZE, single), run("current_thread", AUTHORIZE, single)),
            ("flavor_misses", "current_thread against multi_thread runtime, Authorize (cache off)",
             run("uncached", AUTHORIZE, single), run("current_thread_uncached", AUTHORIZE, single)),
            ("uds", "Unix socket against TCP, Authorize (cache hits), current_thread runtime",
             run("current_thread", AUTHORIZE, single), run("current_thread", AUTHORIZE, single, uds=True)),
            ("tpc_traced", "tracing at 100% exporting over OTLP against tracing off (metrics on in both), Authorize (cache off), thread_per_core",
             run("tpc_traced_off", AUTHORIZE, single), run("tpc_traced", AUTHORIZE, single)),
            ("tpc_telemetry", "all telemetry (tracing at 100%, metrics) against none, Authorize (cache off), thread_per_core",
             run("tpc_uncached", AUTHORIZE, single), run("tpc_traced", AUTHORIZE, single)),
            ("traced", "tracing at 100% exporting over OTLP against tracing off (metrics on in both), Authorize (cache off), multi_thread",
             run("traced_off", AUTHORIZE, single), run("traced", AUTHORIZE, single)),
            ("ct_traced", "tracing at 100% exporting over OTLP against tracing off (metrics on in both), Authorize (cache off), current_thread",
             run("ct_traced_off", AUTHORIZE, single), run("ct_traced", AUTHORIZE, single)),
            ("telemetry", "all telemetry (tracing at 100%, metrics) against none, Authorize (cache off), multi_thread",
             run("uncached", AUTHORIZE, single), run("traced", AUTHORIZE, single)),
            ("ct_telemetry", "all telemetry (tracing at 100%, metrics) against none, Authorize (cache off), current_thread",
             run("current_thread_uncached", AUTHORIZE, single), run("ct_traced", AUTHORIZE, single)),
            ("tpc_tls", "TLS against plaintext, Authorize (cache off), thread_per_core",
             run("tpc_uncached", AUTHORIZE, single), run("tpc_tls", AUTHORIZE, single)),
            ("tpc_mtls", "mutual TLS with an allowlist against plaintext, Authorize (cache off), thread_per_core, closed-loop pace client",
             closed("tpc_uncached", AUTHORIZE, single), closed("tpc_mtls", AUTHORIZE, single)),
        ]
        if args.against:
            comparisons += [
                ("against_hits", "this build against the --against build, Authorize (cache hits), thread_per_core",
                 run("old", AUTHORIZE, single), run("tpc", AUTHORIZE, single)),
                ("against_misses", "this build against the --against build, Authorize (cache off), thread_per_core",
                 run("old_uncached", AUTHORIZE, single), run("tpc_uncached", AUTHORIZE, single)),
            ]
        only = set(args.only.split(",")) if args.only else None
        for key, title, a, b in comparisons:
            if only is None or key in only:
                log(title)
                results[key] = pairs(key, a, b, n)
        if only is not None:
            print(json.dumps({k: results[k] for k in only if k in results}, indent=2))
            return

        log("latency at half of the maximum rate (steady open-loop load)")
        half = {}
        peaks = {
            ("health", "thread_per_core"): results["tpc_hits"]["b_rps_median"],
            ("hits", "thread_per_core"): results["tpc_hits"]["b_rps_median"],
            ("misses", "thread_per_core"): results["tpc_misses"]["b_rps_median"],
            ("batch", "thread_per_core"): results["tpc_batch"]["b_rps_median"],
            # Health at the same offered rate as Authorize (cache hits), for reference.
            ("health", "current_thread"): results["ct_hits"]["b_rps_median"],
            ("health", "multi_thread"): results["hits"]["b_rps_median"],
            ("hits", "current_thread"): results["ct_hits"]["b_rps_median"],
            ("hits", "multi_thread"): results["hits"]["b_rps_median"],
            ("misses", "current_thread"): results["ct_misses"]["b_rps_median"],
            ("misses", "multi_thread"): results["misses"]["b_rps_median"],
            ("batch", "current_thread"): results["ct_batch"]["b_rps_median"],
            ("batch", "multi_thread"): results["batch"]["b_rps_median"],
        }
        server_of = {
            ("health", "thread_per_core"): "tpc",
            ("hits", "thread_per_core"): "tpc",
            ("misses", "thread_per_core"): "tpc_uncached",
            ("batch", "thread_per_core"): "tpc_uncached",
            ("health", "current_thread"): "current_thread",
            ("health", "multi_thread"): "cached",
            ("hits", "current_thread"): "current_thread",
            ("hits", "multi_thread"): "cached",
            ("misses", "current_thread"): "current_thread_uncached",
            ("misses", "multi_thread"): "uncached",
            ("batch", "current_thread"): "current_thread_uncached",
            ("batch", "multi_thread"): "uncached",
        }
        what = {"health": (HEALTH, health), "hits": (AUTHORIZE, single), "misses": (AUTHORIZE, single), "batch": (BATCH, batch)}
        for (key, flavor), peak in peaks.items():
            path, body = what[key]
            server = servers[server_of[(key, flavor)]]
            # Five runs (one with --quick): a single stall of the shared host
            # moves one run's p99 by milliseconds, so the median of five is
            # reported with the range beside it.
            runs = [pace(server, path, body, peak / 2, args) for _ in range(max(1, min(5, n)))]
            half[f"{key}/{flavor}"] = {
                "target_rps": peak / 2,
                "rps": statistics.median(r["rps"] for r in runs),
                "p50_us": statistics.median(r["p50_us"] for r in runs),
                "p90_us": statistics.median(r["p90_us"] for r in runs),
                "p99_us": statistics.median(r["p99_us"] for r in runs),
                "p99_runs_us": [r["p99_us"] for r in runs],
                "p999_us": statistics.median(r["p999_us"] for r in runs),
                "shed": sum(r["shed"] for r in runs),
                "held": sum(r["held"] for r in runs),
                "sent": sum(r["sent"] for r in runs),
            }
            log(f"  {key} {flavor}: {half[f'{key}/{flavor}']}")
        results["half_load"] = half

        check_count = 200
        results["checks"] = {name: s.check(bodies, check_count) for name, s in servers.items()}
        # Every Authorize is one span and one decision; every BatchAuthorize
        # of 100 one span and 100 decisions (5 at start-up, the rest in the
        # final check).
        results["traced_spans_expected"] = {}
        for name, port in traced_metrics.items():
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            decisions = sum(
                float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("verdict_decisions_total{")
            )
            results["traced_spans_expected"][name] = decisions - 99 * (5 + check_count)
    finally:
        for s in servers.values():
            s.stop()
        results["otlp_sink"] = {}
        for name, (sink, _) in sinks.items():
            sink.send_signal(signal.SIGTERM)
            out, _ = sink.communicate(timeout=30)
            try:
                results["otlp_sink"][name] = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                results["otlp_sink"][name] = None

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))
    shutil.rmtree(work, ignore_errors=True)


def report(r):
    h, m, b = r["hits"], r["misses"], r["batch"]
    s = r["settings"]
    lines = [
        f"Machine: {r['machine']['cpus']} CPUs, {r['machine']['platform']}; h2load -t 1 -c {s['connections']} -m {s['streams']}, "
        f"{s['pairs']} A B B A pairs of {s['duration']} runs (after {s['warmup']} warm-up) per comparison; medians.",
        "",
        "| comparison (B / A) | median ratio | goal | A req/s | B req/s |",
        "|---|---|---|---|---|",
        f"| Authorize, cache hits / Health/Check (thread_per_core) | {r['tpc_hits']['ratio_median']:.2f} | ≥ 0.90 | {r['tpc_hits']['a_rps_median']:,.0f} | {r['tpc_hits']['b_rps_median']:,.0f} |",
        f"| Authorize, cache off / Health/Check (thread_per_core) | {r['tpc_misses']['ratio_median']:.2f} | ≥ 0.80 | {r['tpc_misses']['a_rps_median']:,.0f} | {r['tpc_misses']['b_rps_median']:,.0f} |",
        f"| Authorize, cache hits / Health/Check (multi_thread) | {h['ratio_median']:.2f} | ≥ 0.90 | {h['a_rps_median']:,.0f} | {h['b_rps_median']:,.0f} |",
        f"| Authorize, cache off / Health/Check (multi_thread) | {m['ratio_median']:.2f} | ≥ 0.80 | {m['a_rps_median']:,.0f} | {m['b_rps_median']:,.0f} |",
        f"| Authorize, cache hits / Health/Check (current_thread) | {r['ct_hits']['ratio_median']:.2f} | ≥ 0.90 | {r['ct_hits']['a_rps_median']:,.0f} | {r['ct_hits']['b_rps_median']:,.0f} |",
        f"| Authorize, cache off / Health/Check (current_thread) | {r['ct_misses']['ratio_median']:.2f} | ≥ 0.80 | {r['ct_misses']['a_rps_median']:,.0f} | {r['ct_misses']['b_rps_median']:,.0f} |",
        f"| BatchAuthorize 100 calls / Health/Check calls (thread_per_core) | {r['tpc_batch']['ratio_median']:.3f} | | {r['tpc_batch']['a_rps_median']:,.0f} | {r['tpc_batch']['b_rps_median']:,.0f} |",
        f"| BatchAuthorize 100 calls / Health/Check calls (multi_thread) | {b['ratio_median']:.3f} | | {b['a_rps_median']:,.0f} | {b['b_rps_median']:,.0f} |",
        f"| BatchAuthorize 100 calls / Health/Check calls (current_thread) | {r['ct_batch']['ratio_median']:.3f} | | {r['ct_batch']['a_rps_median']:,.0f} | {r['ct_batch']['b_rps_median']:,.0f} |",
        f"| thread_per_core / multi_thread, Authorize cache off | {r['tpc_vs_mt']['ratio_median']:.2f} | | {r['tpc_vs_mt']['a_rps_median']:,.0f} | {r['tpc_vs_mt']['b_rps_median']:,.0f} |",
        f"| thread_per_core / current_thread, Authorize cache off | {r['tpc_vs_ct']['ratio_median']:.2f} | | {r['tpc_vs_ct']['a_rps_median']:,.0f} | {r['tpc_vs_ct']['b_rps_median']:,.0f} |",
        f"| current_thread / multi_thread, Authorize cache hits | {r['flavor_hits']['ratio_median']:.2f} | | {r['flavor_hits']['a_rps_median']:,.0f} | {r['flavor_hits']['b_rps_median']:,.0f} |",
        f"| current_thread / multi_thread, Authorize cache off | {r['flavor_misses']['ratio_median']:.2f} | | {r['flavor_misses']['a_rps_median']:,.0f} | {r['flavor_misses']['b_rps_median']:,.0f} |",
        f"| Unix socket / TCP, Authorize cache hits (current_thread) | {r['uds']['ratio_median']:.2f} | | {r['uds']['a_rps_median']:,.0f} | {r['uds']['b_rps_median']:,.0f} |",
        f"| traced 100% exporting / tracing off (metrics on in both), Authorize cache off (thread_per_core) | {r['tpc_traced']['ratio_median']:.2f} | ≥ 0.85 | {r['tpc_traced']['a_rps_median']:,.0f} | {r['tpc_traced']['b_rps_median']:,.0f} |",
        f"| traced 100% exporting / tracing off (metrics on in both), Authorize cache off (multi_thread) | {r['traced']['ratio_median']:.2f} | ≥ 0.85 | {r['traced']['a_rps_median']:,.0f} | {r['traced']['b_rps_median']:,.0f} |",
        f"| traced 100% exporting / tracing off (metrics on in both), Authorize cache off (current_thread) | {r['ct_traced']['ratio_median']:.2f} | ≥ 0.85 | {r['ct_traced']['a_rps_median']:,.0f} | {r['ct_traced']['b_rps_median']:,.0f} |",
        f"| all telemetry (traced 100%, metrics) / none, Authorize cache off (thread_per_core) | {r['tpc_telemetry']['ratio_median']:.2f} | | {r['tpc_telemetry']['a_rps_median']:,.0f} | {r['tpc_telemetry']['b_rps_median']:,.0f} |",
        f"| all telemetry (traced 100%, metrics) / none, Authorize cache off (multi_thread) | {r['telemetry']['ratio_median']:.2f} | | {r['telemetry']['a_rps_median']:,.0f} | {r['telemetry']['b_rps_median']:,.0f} |",
        f"| all telemetry (traced 100%, metrics) / none, Authorize cache off (current_thread) | {r['ct_telemetry']['ratio_median']:.2f} | | {r['ct_telemetry']['a_rps_median']:,.0f} | {r['ct_telemetry']['b_rps_median']:,.0f} |",
        f"| TLS / plaintext, Authorize cache off (thread_per_core, h2load) | {r['tpc_tls']['ratio_median']:.2f} | | {r['tpc_tls']['a_rps_median']:,.0f} | {r['tpc_tls']['b_rps_median']:,.0f} |",
        f"| mutual TLS with an allowlist / plaintext, Authorize cache off (thread_per_core, pace closed loop) | {r['tpc_mtls']['ratio_median']:.2f} | ≥ 0.85 | {r['tpc_mtls']['a_rps_median']:,.0f} | {r['tpc_mtls']['b_rps_median']:,.0f} |",
        "",
        f"BatchAuthorize: {r['tpc_batch']['b_rps_median'] * 100:,.0f} decisions/s on the thread_per_core runtime, "
        f"{b['b_rps_median'] * 100:,.0f} on multi_thread, "
        f"{r['ct_batch']['b_rps_median'] * 100:,.0f} on current_thread (medians of the batch runs; goal ≥ 1,000,000).",
        "",
        "| at half of the maximum rate (steady load) | runtime | offered req/s | achieved req/s | p50 | p90 | p99 | p99 of each run | p99.9 | shed | held | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    labels = {
        "health": "Health/Check (at the Authorize rate)",
        "hits": "Authorize, cache hits",
        "misses": "Authorize, cache off",
        "batch": "BatchAuthorize 100",
    }
    for key, label in labels.items():
        for flavor in ("thread_per_core", "current_thread", "multi_thread"):
            x = r["half_load"][f"{key}/{flavor}"]
            goal = "p99 < 1 ms" if key in ("hits", "misses") else ""
            lines.append(
                f"| {label} | {flavor} | {x['target_rps']:,.0f} | {x['rps']:,.0f} | {x['p50_us']:,.0f} µs | {x['p90_us']:,.0f} µs "
                f"| {x['p99_us']:,.0f} µs | {', '.join(f'{v:,.0f}' for v in sorted(x.get('p99_runs_us', [])))} | {x['p999_us']:,.0f} µs | {x.get('shed', 0):,} of {x.get('sent', 0):,} | {x.get('held', 0):,} | {goal} |"
            )
    lines += ["", "| at full load, h2load (median of runs) | runtime | p50 | p99 |", "|---|---|---|---|"]
    for key, label, flavor, side in [
        ("tpc_hits", "Health/Check", "thread_per_core", "a"),
        ("tpc_hits", "Authorize, cache hits", "thread_per_core", "b"),
        ("tpc_misses", "Authorize, cache off", "thread_per_core", "b"),
        ("ct_hits", "Health/Check", "current_thread", "a"),
        ("ct_hits", "Authorize, cache hits", "current_thread", "b"),
        ("ct_misses", "Authorize, cache off", "current_thread", "b"),
        ("hits", "Health/Check", "multi_thread", "a"),
        ("hits", "Authorize, cache hits", "multi_thread", "b"),
        ("misses", "Authorize, cache off", "multi_thread", "b"),
    ]:
        x = r[key]
        lines.append(f"| {label} | {flavor} | {x[side + '_p50_us_median']:,.0f} µs | {x[side + '_p99_us_median']:,.0f} µs |")
    for name, label in (("tpc_traced", "thread_per_core"), ("traced", "multi_thread"), ("ct_traced", "current_thread")):
        sink = (r.get("otlp_sink") or {}).get(name)
        expected = r.get("traced_spans_expected", {}).get(name)
        if sink and expected:
            missing = max(0, expected - sink["spans"])
            lines += [
                "",
                f"Traced server ({label}): the OTLP sink received {sink['spans']:,} spans "
                f"({sink['trace_bytes'] / max(1, sink['spans']):,.0f} bytes each) in {sink['trace_exports']:,} exports "
                f"for {expected:,.0f} calls ({100.0 * sink['spans'] / expected:.2f}%; {missing:,.0f} not received: "
                f"dropped by the SDK's bounded queue or still queued when the server was stopped), "
                f"and {sink['metric_exports']:,} metric exports.",
            ]
    checks = {k: c for k, c in r["checks"].items() if "grpc_status_ok" in c}
    total = sum(c["grpc_status_ok"] for c in checks.values())
    lines += ["", f"gRPC check after the runs: {total:,} calls over {len(checks)} servers, all grpc-status OK with the expected answers."]
    tls = [k for k, c in r["checks"].items() if "tls_health" in c]
    if tls:
        lines += [f"TLS servers ({', '.join(tls)}): `verdict health` over TLS answered SERVING after the runs."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
