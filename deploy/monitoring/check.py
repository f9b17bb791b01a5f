#!/usr/bin/env python3
"""Check the Grafana dashboard and the alert rules against a running verdict
(the test command runs this).

A real verdict serves the example bundle from an HTTP source (so that the
remote-source metrics exist) with /metrics on, and takes Authorize, batch
and Health calls; a real Prometheus (Debian's `prometheus` package, which
the test command installs) scrapes it every second and evaluates the alert
rules of prometheusrule.yaml. Then:

- `promtool check rules` accepts the rules;
- every metric name the dashboard or the rules use is on /metrics;
- every dashboard query runs and returns series;
- every rule is loaded and healthy, and none fires on this healthy server.

Usage: check.py --verdict target/release/verdict
"""
import argparse
import json
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "examples" / "clients"))
import run as clients  # noqa: E402  (the example clients' venv and stubs)

FRANK = "arn:aws:iam::111122223333:user/frank"
KEY = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
METRIC = re.compile(r"\b((?:verdict|rpc|process)_[a-z_]+)\b")
SUFFIXES = ("_bucket", "_count", "_sum")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, ok, timeout=30):
    deadline = time.time() + timeout
    while True:
        try:
            if ok():
                return
        except OSError:
            pass
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.1)


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode(errors="replace")


def metric_names(text):
    """The metric names PromQL in `text` uses (not its label names: those of
    `by (…)`, `on (…)` and matchers)."""
    text = re.sub(r"\b(?:by|on|without|ignoring)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\b\w+\s*(?:=~|!~|!=|=)\s*\"", " \"", text)
    return set(METRIC.findall(text))


def rules_yaml(rule_file, out):
    """The PrometheusRule's spec.groups as a plain Prometheus rule file."""
    text = rule_file.read_text()
    spec = text[text.index("spec:\n") + len("spec:\n"):]
    lines = [line[2:] if line.startswith("  ") else line for line in spec.splitlines()]
    out.write_text("\n".join(lines) + "\n")


def traffic(py, gen, port, stop):
    """Authorize and batch calls over TCP until `stop` is set (a client
    process per round, from the example client)."""
    client = str(ROOT / "examples/clients/python/client.py")
    env = {"VERDICT_PY_GEN": str(gen), "PATH": "/usr/bin:/bin"}
    while not stop.is_set():
        subprocess.run([str(py), client, "--tcp", f"127.0.0.1:{port}", "--principal", FRANK,
                        "--action", "kms:Encrypt", "--resource", KEY, "--batch", "--health"],
                       env=env, capture_output=True, timeout=30)
        stop.wait(0.5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--verdict", required=True)
    args = ap.parse_args()
    verdict = str(Path(args.verdict).resolve())
    dashboard = json.loads((HERE / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    rule_text = (HERE / "prometheusrule.yaml").read_text()
    py = clients.venv()
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        gen = work / "gen"
        gen.mkdir()
        clients.generate(py, gen)
        rules = work / "rules.yml"
        rules_yaml(HERE / "prometheusrule.yaml", rules)
        out = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"promtool check rules:\n{out.stdout}{out.stderr}")
        print(f"promtool: {out.stdout.strip().splitlines()[-1]}")
        try:
            site = work / "site"
            site.mkdir()
            subprocess.run([verdict, "bundle", "build", str(ROOT / "examples/bundles/kms"),
                            "-o", str(site / "bundle.tar.gz")], check=True, capture_output=True)
            http_port, grpc_port, metrics_port, prom_port = (free_port() for _ in range(4))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(http_port),
                 "--directory", str(site)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for("the bundle server", lambda: get(f"http://127.0.0.1:{http_port}/bundle.tar.gz"))
            log = open(work / "verdict.stderr", "w")
            procs.append(subprocess.Popen(
                [verdict, "serve", "--bundle", f"http://127.0.0.1:{http_port}/bundle.tar.gz",
                 "--listen", f"127.0.0.1:{grpc_port}", "--metrics-listen", f"127.0.0.1:{metrics_port}"],
                env={"VERDICT_ALLOW_INSECURE_BUNDLE_SOURCE": "true", "VERDICT_POLL_INTERVAL_MS": "1000",
                     "PATH": "/usr/bin:/bin"},
                stdout=subprocess.DEVNULL, stderr=log))
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            wait_for("verdict's /metrics", lambda: "verdict_bundle_serial" in get(metrics_url))
            (work / "prometheus.yml").write_text(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                f"rule_files: [{json.dumps(str(rules))}]\n"
                "scrape_configs:\n  - job_name: verdict\n    static_configs:\n"
                f"      - targets: ['127.0.0.1:{metrics_port}']\n")
            procs.append(subprocess.Popen(
                ["prometheus", f"--config.file={work / 'prometheus.yml'}",
                 f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=subprocess.DEVNULL, stderr=open(work / "prometheus.log", "w")))
            api = f"http://127.0.0.1:{prom_port}/api/v1"
            wait_for("Prometheus", lambda: json.loads(get(f"{api}/status/buildinfo"))["status"] == "success")
            stop = threading.Event()
            driver = threading.Thread(target=traffic, args=(py, gen, grpc_port, stop), daemon=True)
            driver.start()
            # Enough scrapes for rates over 10 s windows.
            time.sleep(12)

            exposed = get(metrics_url)
            names = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", exposed, re.M))
            used = metric_names(" ".join(queries)) | metric_names(rule_text)
            missing = sorted(n for n in used if n not in names)
            if missing:
                sys.exit(f"metrics the dashboard or the rules use but /metrics lacks: {missing}")
            print(f"/metrics has all {len(used)} metrics the dashboard and the rules use")

            def query(expr):
                expr = expr.replace("$__rate_interval", "10s").replace("$job", ".*")
                body = json.loads(get(f"{api}/query?" + urllib.parse.urlencode({"query": expr})))
                if body["status"] != "success":
                    sys.exit(f"{expr}: {body}")
                return body["data"]["result"]

            empty = [q for q in queries if not query(q)]
            if empty:
                sys.exit("dashboard queries with no series:\n  " + "\n  ".join(empty))
            print(f"all {len(queries)} dashboard queries return series")
            groups = json.loads(get(f"{api}/rules"))["data"]["groups"]
            loaded = [r for g in groups for r in g["rules"]]
            want = len(re.findall(r"^\s+- alert:", rule_text, re.M))
            bad = [(r["name"], r.get("lastError")) for r in loaded if r["health"] != "ok"]
            if len(loaded) != want or bad:
                sys.exit(f"rules loaded {len(loaded)} of {want}; unhealthy: {bad}")
            firing = [a["labels"]["alertname"] for a in json.loads(get(f"{api}/alerts"))["data"]["alerts"]]
            if firing:
                sys.exit(f"alerts fire on a healthy server: {firing}")
            stop.set()
            driver.join(timeout=60)
            print(f"all {want} alert rules loaded and healthy; none fires")
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    main()
