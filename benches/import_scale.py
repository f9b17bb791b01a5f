#!/usr/bin/env python3
"""Import at account scale: writes an export of one account holding ROLES
roles (each with a trust policy, INLINE inline policies and one customer
managed policy of its own; every tenth with a permissions boundary) in the
shape `aws iam get-account-authorization-details` prints, then times
`verdict import` and `verdict check` on the result (check loads and
compiles it as `serve` would).

    python3 benches/import_scale.py --verdict target/release/verdict
    python3 benches/import_scale.py --roles 5000 --inline 3 --max-import-seconds 10

The defaults, 5,000 roles and 20,000 policy documents (15,000 inline,
5,000 managed), are the scale the import work must hold; BENCHMARKS.md has
the figures. With --max-import-seconds the script fails when the import
takes longer (the test command runs it so, as the acceptance bound).
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "111122223333"


def document(i, j):
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": f"Use{j}",
                "Effect": "Allow",
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{i:08d}-0000-4000-8000-{j:012d}",
                "Condition": {"StringEquals": {"kms:EncryptionContext:app": f"app-{i}"}},
            },
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": f"arn:aws:s3:::bucket-{i % 97}/app-{i}/*",
            },
        ],
    }


def export(root, roles, inline):
    policies, details = [], []
    boundary_arn = f"arn:aws:iam::{ACCOUNT}:policy/boundary"
    policies.append(
        {
            "PolicyName": "boundary",
            "PolicyId": "ANPABOUNDARY",
            "Arn": boundary_arn,
            "Path": "/",
            "DefaultVersionId": "v1",
            "AttachmentCount": roles // 10,
            "IsAttachable": True,
            "PolicyVersionList": [
                {
                    "Document": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]},
                    "VersionId": "v1",
                    "IsDefaultVersion": True,
                }
            ],
        }
    )
    for i in range(roles):
        name = f"app-{i}"
        arn = f"arn:aws:iam::{ACCOUNT}:policy/apps/{name}-managed"
        policies.append(
            {
                "PolicyName": f"{name}-managed",
                "PolicyId": f"ANPA{i:016d}",
                "Arn": arn,
                "Path": "/apps/",
                "DefaultVersionId": "v2",
                "AttachmentCount": 1,
                "IsAttachable": True,
                "PolicyVersionList": [
                    {"Document": document(i, 99), "VersionId": "v2", "IsDefaultVersion": True},
                    {"Document": document(i, 98), "VersionId": "v1", "IsDefaultVersion": False},
                ],
            }
        )
        role = {
            "Path": "/apps/",
            "RoleName": name,
            "RoleId": f"AROA{i:016d}",
            "Arn": f"arn:aws:iam::{ACCOUNT}:role/apps/{name}",
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
            },
            "InstanceProfileList": [],
            "RolePolicyList": [{"PolicyName": f"inline-{j}", "PolicyDocument": document(i, j)} for j in range(inline)],
            "AttachedManagedPolicies": [{"PolicyName": f"{name}-managed", "PolicyArn": arn}],
            "Tags": [{"Key": "team", "Value": f"team-{i % 50}"}],
            "RoleLastUsed": {},
        }
        if i % 10 == 0:
            role["PermissionsBoundary"] = {"PermissionsBoundaryType": "Policy", "PermissionsBoundaryArn": boundary_arn}
        details.append(role)
    out = {"UserDetailList": [], "GroupDetailList": [], "RoleDetailList": details, "Policies": policies}
    (root / "iam").mkdir(parents=True)
    (root / "iam" / f"{ACCOUNT}.json").write_text(json.dumps(out, indent=4))
    return len(policies) + roles * inline


def timed(cmd):
    start = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if out.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} exited {out.returncode}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return elapsed, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verdict", default=str(ROOT / "target/release/verdict"))
    ap.add_argument("--roles", type=int, default=5000)
    ap.add_argument("--inline", type=int, default=3, help="inline policies per role")
    ap.add_argument("--max-import-seconds", type=float, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="verdict-import-scale-"))
    try:
        documents = export(work / "export", args.roles, args.inline)
        size = (work / "export" / "iam" / f"{ACCOUNT}.json").stat().st_size
        t_import, _ = timed([args.verdict, "import", work / "export", "-o", work / "bundle"])
        t_check, out = timed([args.verdict, "check", work / "bundle"])
        summary = out.stdout.strip().splitlines()[-1]
        print(
            f"import scale: {args.roles} roles, {documents} policy documents, export {size / 1e6:.1f} MB: "
            f"import {t_import:.2f} s, check (load and compile) {t_check:.2f} s; {summary}"
        )
        if args.max_import_seconds is not None and t_import > args.max_import_seconds:
            sys.exit(f"the import took {t_import:.2f} s, over {args.max_import_seconds} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
