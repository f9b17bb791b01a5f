#!/usr/bin/env python3
"""Ask verdict whether a principal may do an action on a resource, as a key
service would before every sensitive operation (grpcio).

    pip install -r requirements.txt   # grpcio, grpcio-tools, grpcio-health-checking
    python -m grpc_tools.protoc -I ../../../proto --python_out=gen \\
        --grpc_python_out=gen verdict/v1/authorizer.proto
    python client.py --tcp 127.0.0.1:50051 --principal ARN --action kms:Encrypt --resource ARN
    python client.py --uds /run/verdict/verdict.sock ...
    python client.py --tcp verdict.keys.svc:50051 --ca ca.pem --cert client.pem --key client.key ...

Prints one JSON object per decision. Exits 0 when every call was answered
(whatever the decision), 1 when one failed: a key service treats a failed
call as a deny, never as an Allow.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.environ.get("VERDICT_PY_GEN", os.path.join(os.path.dirname(__file__), "gen")))

import grpc  # noqa: E402
from verdict.v1 import authorizer_pb2 as pb  # noqa: E402
from verdict.v1 import authorizer_pb2_grpc as rpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402  (grpcio-health-checking)


def channel(args):
    """A channel to verdict.

    On the Unix socket grpcio sends the socket's path as the HTTP/2
    :authority, which is not a valid authority: verdict refuses the call
    with PROTOCOL_ERROR (and logs a hint). Set the authority to localhost.
    Over TCP with --ca the channel is TLS, and with --cert and --key mutual
    TLS.
    """
    if args.uds:
        options = [] if args.no_authority else [("grpc.default_authority", "localhost")]
        return grpc.insecure_channel(f"unix:{args.uds}", options=options)
    if args.ca:
        with open(args.ca, "rb") as f:
            ca = f.read()
        cert = key = None
        if args.cert and args.key:
            with open(args.cert, "rb") as f:
                cert = f.read()
            with open(args.key, "rb") as f:
                key = f.read()
        creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
        options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
        return grpc.secure_channel(args.tcp, creds, options=options)
    return grpc.insecure_channel(args.tcp)


def as_json(response):
    return {
        "decision": pb.Decision.Name(response.decision),
        "decision_id": response.decision_id,
        "matched": [f"{m.policy_id}#{m.index}" for m in response.matched],
        "cached": response.cached,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", help="HOST:PORT")
    where.add_argument("--uds", help="the Unix socket's path")
    p.add_argument("--ca", help="PEM file of the CA verdict's certificate chains to (TLS)")
    p.add_argument("--cert", help="client certificate (mutual TLS)")
    p.add_argument("--key", help="client key (mutual TLS)")
    p.add_argument("--server-name", help="the name verdict's certificate is checked against")
    p.add_argument("--no-authority", action="store_true",
                   help="on the Unix socket, leave grpcio's default authority (to see the refusal)")
    p.add_argument("--principal", required=True)
    p.add_argument("--action", required=True)
    p.add_argument("--resource", required=True)
    p.add_argument("--context", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--explain", action="store_true")
    p.add_argument("--batch", action="store_true", help="also decide kms:Decrypt beside it in one batch")
    p.add_argument("--health", action="store_true", help="check grpc.health.v1 first")
    args = p.parse_args()

    context = {}
    for kv in args.context:
        k, _, v = kv.partition("=")
        context.setdefault(k, pb.ContextValues()).values.append(v)
    request = pb.AuthorizeRequest(principal=args.principal, action=args.action, resource=args.resource,
                                  context=context, explain=args.explain)
    with channel(args) as ch:
        try:
            if args.health:
                status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
                print(json.dumps({"health": health_pb2.HealthCheckResponse.ServingStatus.Name(status.status)}))
            stub = rpc.AuthorizerStub(ch)
            print(json.dumps(as_json(stub.Authorize(request, timeout=5))))
            if args.batch:
                twin = pb.AuthorizeRequest()
                twin.CopyFrom(request)
                twin.action = "kms:Decrypt"
                batch = stub.BatchAuthorize(pb.BatchAuthorizeRequest(requests=[request, twin]), timeout=5)
                for r in batch.responses:
                    print(json.dumps(as_json(r)))
        except grpc.RpcError as e:
            print(json.dumps({"error": e.code().name, "details": e.details()}))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
