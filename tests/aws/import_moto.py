#!/usr/bin/env python3
"""verdict import against a real implementation of the AWS APIs.

Starts moto's server on 127.0.0.1, builds an organization and a member
account in it with boto3 (users, groups, roles with trust policies and a
permissions boundary, managed and inline policies, KMS keys with key
policies, a grant with a constraint, aliases and tags, an SCP and an RCP),
runs scripts/collect-aws with the real AWS CLI against it, imports the
export twice (the two bundles must be byte-identical), checks the bundle,
and decides a request set whose expected answers follow from the scenario
(docs/import.md; the rules are docs/evaluation.md).

    python3 tests/aws/import_moto.py --verdict target/release/verdict

Needs moto[server], boto3 and awscli in the running Python (scripts/test
installs them into target/venv-aws). Exits 1 on the first mismatch.
"""

import argparse
import filecmp
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
MANAGEMENT = "123456789012"  # moto's default account
OUTSIDE = "444455556666"  # an account outside the organization


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(bin_dir, workdir):
    port = free_port()
    log = open(workdir / "moto.log", "w")
    proc = subprocess.Popen(
        [str(bin_dir / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        if proc.poll() is not None:
            sys.exit(f"moto_server exited: {(workdir / 'moto.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
            return proc, url
        except OSError:
            if time.time() > deadline:
                proc.kill()
                sys.exit("moto_server did not start within 60 s")
            time.sleep(0.2)


def doc(obj):
    return json.dumps(obj)


def trust(*principals):
    return doc(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": list(principals)}, "Action": "sts:AssumeRole"}],
        }
    )


class Scenario:
    """What the test builds, and the ids moto gave it."""

    def __init__(self, url, creds):
        self.url = url
        self.creds = creds

    def client(self, service, creds=None):
        c = creds or self.creds
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id=c["AccessKeyId"],
            aws_secret_access_key=c["SecretAccessKey"],
            aws_session_token=c.get("SessionToken"),
        )

    def organization(self):
        org = self.client("organizations")
        self.org_id = org.create_organization(FeatureSet="ALL")["Organization"]["Id"]
        self.root = org.list_roots()["Roots"][0]["Id"]
        for kind in ("SERVICE_CONTROL_POLICY", "RESOURCE_CONTROL_POLICY"):
            try:
                org.enable_policy_type(RootId=self.root, PolicyType=kind)
            except org.exceptions.PolicyTypeAlreadyEnabledException:
                pass
        self.ou = org.create_organizational_unit(ParentId=self.root, Name="workloads")["OrganizationalUnit"]["Id"]
        status = org.create_account(Email="payments@example.com", AccountName="payments")["CreateAccountStatus"]
        self.member = status["AccountId"]
        org.move_account(AccountId=self.member, SourceParentId=self.root, DestinationParentId=self.ou)
        scp = org.create_policy(
            Name="no-key-deletion",
            Description="workloads may not delete keys",
            Type="SERVICE_CONTROL_POLICY",
            Content=doc(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Deny", "Action": "kms:ScheduleKeyDeletion", "Resource": "*"}],
                }
            ),
        )["Policy"]["PolicySummary"]["Id"]
        org.attach_policy(PolicyId=scp, TargetId=self.ou)
        rcp = org.create_policy(
            Name="org-only-keys",
            Description="keys answer the organization only",
            Type="RESOURCE_CONTROL_POLICY",
            Content=doc(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "kms:*",
                            "Resource": "*",
                            "Condition": {
                                "StringNotEqualsIfExists": {"aws:PrincipalOrgID": self.org_id},
                                "BoolIfExists": {"aws:PrincipalIsAWSService": "false"},
                            },
                        }
                    ],
                }
            ),
        )["Policy"]["PolicySummary"]["Id"]
        org.attach_policy(PolicyId=rcp, TargetId=self.root)

    def member_credentials(self):
        sts = self.client("sts")
        out = sts.assume_role(
            RoleArn=f"arn:aws:iam::{self.member}:role/OrganizationAccountAccessRole", RoleSessionName="collect"
        )
        return out["Credentials"]

    def iam(self, creds):
        m = self.member
        iam = self.client("iam", creds)
        kms_use = iam.create_policy(
            PolicyName="kms-use",
            Path="/app/",
            PolicyDocument=doc(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "UseKeys",
                            "Effect": "Allow",
                            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"],
                            "Resource": f"arn:aws:kms:{REGION}:{m}:key/*",
                        }
                    ],
                }
            ),
        )["Policy"]["Arn"]
        boundary = iam.create_policy(
            PolicyName="boundary-kms",
            PolicyDocument=doc(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"}],
                }
            ),
        )["Policy"]["Arn"]
        # A second version becomes the default: the import reads that one.
        iam.create_policy_version(
            PolicyArn=boundary,
            PolicyDocument=doc(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], "Resource": "*"}
                    ],
                }
            ),
            SetAsDefault=True,
        )
        iam.create_user(UserName="alice", Tags=[{"Key": "team", "Value": "payments"}])
        iam.create_user(UserName="bob")
        iam.create_group(GroupName="devs")
        iam.add_user_to_group(GroupName="devs", UserName="alice")
        iam.put_group_policy(
            GroupName="devs",
            PolicyName="assume-app",
            PolicyDocument=doc(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": f"arn:aws:iam::{m}:role/app"}
                    ],
                }
            ),
        )
        iam.put_user_policy(
            UserName="alice",
            PolicyName="describe",
            PolicyDocument=doc(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:DescribeKey", "Resource": "*"}]}
            ),
        )
        iam.create_role(
            RoleName="app",
            AssumeRolePolicyDocument=trust(f"arn:aws:iam::{m}:user/alice"),
            PermissionsBoundary=boundary,
        )
        iam.attach_role_policy(RoleName="app", PolicyArn=kms_use)
        iam.create_role(RoleName="audit", AssumeRolePolicyDocument=trust(f"arn:aws:iam::{m}:user/bob"))
        iam.create_role(RoleName="ops", AssumeRolePolicyDocument=trust(f"arn:aws:iam::{m}:root"))

    def kms(self, creds):
        m = self.member
        kms = self.client("kms", creds)
        root = f"arn:aws:iam::{m}:root"
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "EnableIAMPolicies", "Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:*", "Resource": "*"},
                {
                    "Sid": "KeyAdministrators",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{m}:role/ops"},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "Partner",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{OUTSIDE}:root"},
                    "Action": "kms:Encrypt",
                    "Resource": "*",
                },
            ],
        }
        self.key = kms.create_key(
            Policy=doc(policy),
            Description="payments data key",
            Tags=[{"TagKey": "dept", "TagValue": "payments"}],
        )["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/payments", TargetKeyId=self.key)
        kms.create_grant(
            KeyId=self.key,
            GranteePrincipal=f"arn:aws:iam::{m}:user/bob",
            Operations=["Decrypt"],
            Constraints={"EncryptionContextEquals": {"dept": "payments"}},
            RetiringPrincipal=f"arn:aws:iam::{m}:role/ops",
            Name="bob-decrypts",
        )
        self.disabled = kms.create_key(
            Policy=doc({"Version": "2012-10-17", "Statement": [policy["Statement"][0]]}),
            Description="retired key",
        )["KeyMetadata"]["KeyId"]
        kms.disable_key(KeyId=self.disabled)

    def requests(self):
        """(request, expected decision, why)."""
        m = self.member
        key = f"arn:aws:kms:{REGION}:{m}:key/{self.key}"
        disabled = f"arn:aws:kms:{REGION}:{m}:key/{self.disabled}"
        app = f"arn:aws:sts::{m}:assumed-role/app/s1"
        ops = f"arn:aws:sts::{m}:assumed-role/ops/s1"
        alice, bob = f"arn:aws:iam::{m}:user/alice", f"arn:aws:iam::{m}:user/bob"
        ctx = {"kms:EncryptionContext:dept": "payments"}

        def r(principal, action, resource, expected, why, context=None, by=None):
            """`by`: a kind of policy that must be among the deciding statements."""
            req = {"principal": principal, "action": action, "resource": resource}
            if context:
                req["context"] = context
            return req, (expected, by), why

        return [
            r(app, "kms:Encrypt", key, "Allow", "managed policy on the role, key policy delegates to the account, boundary allows"),
            r(app, "kms:GenerateDataKey", key, "ImplicitDeny", "the permissions boundary leaves it out"),
            r(app, "kms:DescribeKey", key, "ImplicitDeny", "the boundary's default version allows it, no identity policy does"),
            r(alice, "sts:AssumeRole", f"arn:aws:iam::{m}:role/app", "Allow", "group policy and the role's trust policy"),
            r(bob, "sts:AssumeRole", f"arn:aws:iam::{m}:role/app", "ImplicitDeny", "the trust policy does not name bob"),
            r(bob, "sts:AssumeRole", f"arn:aws:iam::{m}:role/audit", "Allow", "a trust policy naming a user of its account", by="trust"),
            r(alice, "sts:AssumeRole", f"arn:aws:iam::{m}:role/audit", "ImplicitDeny", "the trust policy names bob only"),
            r(alice, "kms:DescribeKey", key, "Allow", "inline user policy, key policy delegates"),
            r(bob, "kms:Decrypt", key, "Allow", "the grant, its constraint met", ctx, by="grant"),
            r(bob, "kms:Decrypt", key, "ImplicitDeny", "the grant's constraint is not met"),
            r(ops, "kms:DisableKey", key, "Allow", "the key policy names the role"),
            r(ops, "kms:ScheduleKeyDeletion", key, "ExplicitDeny", "the SCP on the member account's OU", by="scp"),
            r(app, "kms:Decrypt", disabled, "ImplicitDeny", "the key is disabled"),
            r(f"arn:aws:iam::{OUTSIDE}:root", "kms:Encrypt", key, "ExplicitDeny", "the RCP denies principals outside the organization",
              by="rcp"),
            r(f"arn:aws:iam::{MANAGEMENT}:root", "kms:Encrypt", key, "ImplicitDeny", "another account of the organization, not named"),
        ]


def run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--verdict", default=str(ROOT / "target/release/verdict"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory (export, bundles) and print it")
    args = ap.parse_args()
    verdict = Path(args.verdict).resolve()
    bin_dir = Path(sys.executable).parent
    work = Path(tempfile.mkdtemp(prefix="verdict-moto-"))
    proc, url = start_moto(bin_dir, work)
    try:
        management = {"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": "test"}
        s = Scenario(url, management)
        s.organization()
        member = s.member_credentials()
        s.iam(member)
        s.kms(member)

        export = work / "export"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            {
                "PATH": f"{bin_dir}:{env['PATH']}",
                "AWS_ENDPOINT_URL": url,
                "AWS_DEFAULT_REGION": REGION,
                "AWS_CONFIG_FILE": str(work / "no-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-credentials"),
            }
        )
        # The member account, as its own credentials see it (IAM and KMS;
        # it may not read the organization), then the organization from
        # the management account (its IAM and KMS hold nothing here).
        member_env = dict(
            env,
            AWS_ACCESS_KEY_ID=member["AccessKeyId"],
            AWS_SECRET_ACCESS_KEY=member["SecretAccessKey"],
            AWS_SESSION_TOKEN=member["SessionToken"],
        )
        run([ROOT / "scripts/collect-aws", export, "--no-organization"], env=member_env)
        mgmt_env = dict(env, AWS_ACCESS_KEY_ID=management["AccessKeyId"], AWS_SECRET_ACCESS_KEY="test")
        run([ROOT / "scripts/collect-aws", export], env=mgmt_env)
        for f in (f"iam/{s.member}.json", f"kms/{s.key}/grants.json", "organizations/roots.json"):
            if not (export / f).is_file():
                sys.exit(f"collect-aws did not write {f}")

        first, second = work / "bundle", work / "bundle-again"
        imported = run([verdict, "import", export, "-o", first])
        run([verdict, "import", export, "-o", second])
        cmp = filecmp.dircmp(first, second)
        differing = []

        def walk(c, prefix=""):
            differing.extend(prefix + n for n in c.diff_files + c.left_only + c.right_only + c.funny_files)
            for name, sub in c.subdirs.items():
                walk(sub, f"{prefix}{name}/")

        walk(cmp)
        if differing:
            sys.exit(f"a second import differs in {differing}")
        run([verdict, "check", first])

        cases = s.requests()
        reqs = work / "requests.jsonl"
        reqs.write_text("".join(json.dumps(req) + "\n" for req, _, _ in cases))
        out = run([verdict, "eval", first, "--requests", reqs]).stdout.splitlines()
        failures = []
        for (req, (expected, by), why), line in zip(cases, out, strict=True):
            got = json.loads(line)
            decision = got.get("decision", got)
            kinds = {m.get("kind") for m in got.get("matched", [])}
            if decision != expected or (by and by not in kinds):
                failures.append(
                    f"{req['principal']} {req['action']} {req['resource']}: got {decision} by {sorted(kinds)}, "
                    f"expected {expected}{f' by {by}' if by else ''} ({why})"
                )
        if failures:
            notes = imported.stderr.strip()
            sys.exit("decisions differ:\n  " + "\n  ".join(failures) + (f"\nimport notes:\n{notes}" if notes else ""))
        print(f"moto import: {len(cases)} decisions as expected; re-import byte-identical; revision "
              f"{json.loads((first / 'manifest.json').read_text()).get('revision')}")
    finally:
        if args.keep:
            print(f"work directory: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
