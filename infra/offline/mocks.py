"""Pulumi's mock engine for the offline synth.

Outputs look like the real providers' (ids, ARNs, DNS names) and are derived only from the
URN and inputs, never from the clock or randomness, so two runs give identical artifacts.
The monitor records parent, dependencies and provider of every registration.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import pulumi
from pulumi.runtime import resource as sdk_resource, rpc
from google.protobuf import json_format, struct_pb2
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, _ensure_event_loop, _resolve_callbacks
from pulumi.runtime.proto import resource_pb2, source_pb2
from pulumi.runtime.sync_await import _sync_await

ACCOUNT_ID = "111122223333"
SECRET_MARK = "[secret]"


@contextlib.contextmanager
def without_source_positions() -> Iterator[None]:
    """The SDK extracts and formats the Python stack at every registration, for the engine's source positions. The
    mock monitor keeps none of them: skipping the walk saves about a tenth of a second of the prod synth."""
    saved = sdk_resource._get_stack_trace
    sdk_resource._get_stack_trace = source_pb2.StackTrace
    try:
        yield
    finally:
        sdk_resource._get_stack_trace = saved


def digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def _walk(value: Any, on_secret: Callable[[Any], Any], on_leaf: Callable[[Any], Any] = lambda v: v) -> Any:
    """Rebuilds a property value, handing each secret's content and each plain leaf to the given functions."""
    if is_secret(value):
        return on_secret(value["value"])
    if isinstance(value, dict):
        return {k: _walk(v, on_secret, on_leaf) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, on_secret, on_leaf) for v in value]
    return on_leaf(value)


# A number with a fraction or an exponent where json.dumps writes a value: after `[`, `: ` or `, `.
_JSON_FLOAT = re.compile(r"(?:\[|[:,] )-?\d+(?:\.\d|[eE])")


def _plain(value: Any, floats: bool = False) -> bool:
    """Whether a JSON value holds no secret (nor, with `floats`, any number a walk would rewrite): the C encoder
    tells in a fraction of a Python walk's time, and most values (every vendored CRD) are plain."""
    text = json.dumps(value)
    return rpc._special_secret_sig not in text and not (floats and _JSON_FLOAT.search(text))


def reveal(value: Any) -> Any:
    """Unwraps secrets, for the mock outputs a provider would compute from them."""
    return value if _plain(value) else _walk(value, reveal)


def redact(value: Any) -> Any:
    """Replaces every secret leaf with a marker, keeping the shape, so no artifact carries a secret's value."""
    return value if _plain(value) else _walk(value, lambda inner: _walk(reveal(inner), reveal, lambda _: SECRET_MARK))


def integral(value: Any) -> Any:
    """The engine's wire format carries every number as a double; show whole numbers as integers."""
    if _plain(value, floats=True):
        return value
    return _walk(
        value,
        lambda inner: {rpc._special_sig_key: rpc._special_secret_sig, "value": integral(inner)},
        lambda v: int(v) if isinstance(v, float) and v.is_integer() else v,
    )


def _plain_resource_references(struct: struct_pb2.Struct) -> struct_pb2.Struct:
    """Replaces each serialized resource reference with {urn, id}: what a reference shows of the resource."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            if value.get(rpc._special_sig_key) == rpc._special_resource_sig:
                return {"urn": value["urn"], **({"id": value["id"]} if "id" in value else {})}
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    result = struct_pb2.Struct()
    json_format.ParseDict(plain(json_format.MessageToDict(struct)), result)
    return result


def _keep_nulls(value: struct_pb2.Value, plain: Any) -> Any:
    """`plain` (deserialized, which drops null map entries) with the nulls the program sent put back.

    The engine passes a null in a Helm release's values to Helm, which deletes the chart's default for
    that key; the record must show it as the engine gets it.
    """
    kind = value.WhichOneof("kind")
    if kind == "struct_value" and isinstance(plain, dict) and rpc._special_sig_key not in value.struct_value.fields:
        out = dict(plain)
        for key, field in value.struct_value.fields.items():
            if field.WhichOneof("kind") == "null_value":
                out[key] = None
            elif key in out:
                out[key] = _keep_nulls(field, out[key])
        return out
    if kind == "list_value" and isinstance(plain, list) and len(plain) == len(value.list_value.values):
        return [_keep_nulls(v, p) for v, p in zip(value.list_value.values, plain)]
    return plain


class PlatformMocks(pulumi.runtime.Mocks):
    def __init__(self, region: str):
        self.region = region
        self._by_type: dict[str, Callable[[MockResourceArgs, str, dict], tuple[str, dict]]] = {
            "aws:ec2/vpc:Vpc": self._vpc,
            "aws:ec2/subnet:Subnet": lambda a, h, i: self._ec2("subnet", h, i),
            "aws:ec2/internetGateway:InternetGateway": lambda a, h, i: self._ec2("igw", h, i),
            "aws:ec2/eip:Eip": self._eip,
            "aws:ec2/natGateway:NatGateway": lambda a, h, i: self._ec2("nat", h, i),
            "aws:ec2/routeTable:RouteTable": lambda a, h, i: self._ec2("rtb", h, i),
            "aws:ec2/routeTableAssociation:RouteTableAssociation": lambda a, h, i: self._ec2("rtbassoc", h, i),
            "aws:ec2/vpcEndpoint:VpcEndpoint": lambda a, h, i: self._ec2("vpce", h, i),
            "aws:ec2/securityGroup:SecurityGroup": lambda a, h, i: self._ec2("sg", h, i),
            "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": lambda a, h, i: self._ec2("sg", h, i),
            "aws:ec2/flowLog:FlowLog": lambda a, h, i: self._ec2("fl", h, i),
            "aws:ec2/launchTemplate:LaunchTemplate": self._launch_template,
            "aws:kms/key:Key": self._kms_key,
            "aws:cloudwatch/logGroup:LogGroup": self._log_group,
            "aws:iam/role:Role": self._iam_role,
            "aws:iam/policy:Policy": self._iam_policy,
            "aws:iam/openIdConnectProvider:OpenIdConnectProvider": self._oidc_provider,
            "aws:eks/nodeGroup:NodeGroup": self._node_group,
            "aws:eks/addon:Addon": self._addon,
            "aws:sqs/queue:Queue": self._sqs_queue,
            "aws:cloudwatch/eventRule:EventRule": self._event_rule,
            "aws:eks/podIdentityAssociation:PodIdentityAssociation": self._pod_identity,
            "aws:eks/accessEntry:AccessEntry": self._access_entry,
            HELM_RELEASE: self._helm_release,
            "kubernetes:core/v1:Service": self._k8s_service,
            "aws:efs/fileSystem:FileSystem": self._efs,
            "aws:opensearch/domain:Domain": self._search_domain,
            "aws:msk/cluster:Cluster": self._msk_cluster,
            "aws:msk/serverlessCluster:ServerlessCluster": self._msk_cluster,
            "random:index/randomPassword:RandomPassword": self._random_password,
            "random:index/randomId:RandomId": lambda a, h, i: (f"id-{h[:8]}", {"hex": h[: 2 * int(i.get("byteLength", 8))]}),
            "aws:s3/bucket:Bucket": self._s3_bucket,
            "aws:eks/capability:Capability": self._eks_capability,
            "aws:rds/cluster:Cluster": self._rds_cluster,
        }
        # Children a packaged (remote) component creates inside its own provider: recorded as the engine would
        # record them, so that policies see them and resource references in the component's outputs resolve.
        # By the component's URN: the monitor registers in several threads at once.
        self.remote_children: dict[str, list[RemoteChild]] = {}
        # Outputs of a registered resource by URN (the recording monitor provides it).
        self.outputs_of: Callable[[str], dict] = lambda urn: {}

    # -- helpers ------------------------------------------------------------------------
    def arn(self, service: str, resource: str, region: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if region else ''}:{ACCOUNT_ID}:{resource}"

    @staticmethod
    def _physical_name(args: MockResourceArgs, h: str, inputs: dict) -> str:
        if inputs.get("name"):
            return inputs["name"]
        prefix = inputs.get("namePrefix")
        return f"{prefix}{h[:8]}" if prefix else f"{args.name}-{h[:7]}"

    # -- resources ----------------------------------------------------------------------
    def new_resource(self, args: MockResourceArgs) -> tuple[Optional[str], dict]:
        # The Mocks interface carries no URN; RecordingMonitor calls state_for with the real one.
        return self.state_for(args, f"{args.typ}::{args.name}::{args.provider}")

    def state_for(self, args: MockResourceArgs, urn: str) -> tuple[Optional[str], dict]:
        h = digest(urn, 24)
        inputs = reveal(args.inputs)
        if args.typ.startswith("pulumi:providers:"):
            return f"provider-{h[:12]}", dict(args.inputs)
        if args.typ in (CONFIG_FILE, CONFIG_GROUP):
            # A packaged component's state is its outputs: the objects it applies are not echoed back.
            rid, outputs = self._config_objects(args, h, inputs, urn)
            return rid, {**outputs, "id": rid}
        if args.typ == "eks:index:Cluster":
            rid, extra = self._eks_cluster(args, h, inputs, urn)
        elif args.typ in self._by_type:
            rid, extra = self._by_type[args.typ](args, h, inputs)
        elif args.typ.startswith("kubernetes:"):
            meta = inputs.get("metadata") or {}
            rid = f"{meta.get('namespace')}/{meta.get('name')}" if meta.get("namespace") else str(meta.get("name") or args.name)
            extra = {}
        else:
            rid, extra = f"{args.name}-{h[:8]}", {}
        return rid, {**args.inputs, **extra, "id": rid}

    def _ec2(self, prefix: str, h: str, inputs: dict) -> tuple[str, dict]:
        rid = f"{prefix}-{h[:17]}"
        return rid, {"arn": self.arn("ec2", f"{prefix}/{rid}"), "ownerId": ACCOUNT_ID}

    def _vpc(self, args, h, inputs):
        rid = f"vpc-{h[:17]}"
        return rid, {
            "arn": self.arn("ec2", f"vpc/{rid}"),
            "defaultSecurityGroupId": f"sg-{h[1:18]}",
            "mainRouteTableId": f"rtb-{h[2:19]}",
        }

    def _eip(self, args, h, inputs):
        rid = f"eipalloc-{h[:17]}"
        n = int(h[:4], 16)
        return rid, {"allocationId": rid, "publicIp": f"198.51.100.{n % 254 + 1}"}

    def _launch_template(self, args, h, inputs):
        rid = f"lt-{h[:17]}"
        return rid, {"arn": self.arn("ec2", f"launch-template/{rid}"), "latestVersion": 1, "defaultVersion": 1}

    def _kms_key(self, args, h, inputs):
        key_id = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{digest(h, 12)}"
        return key_id, {"arn": self.arn("kms", f"key/{key_id}"), "keyId": key_id}

    def _log_group(self, args, h, inputs):
        name = self._physical_name(args, h, inputs)
        return name, {"name": name, "arn": self.arn("logs", f"log-group:{name}")}

    def _iam_role(self, args, h, inputs):
        name = self._physical_name(args, h, inputs)
        return name, {"name": name, "arn": self.arn("iam", f"role/{name}", region=False), "uniqueId": f"AROA{h[:17].upper()}"}

    def _iam_policy(self, args, h, inputs):
        name = self._physical_name(args, h, inputs)
        arn = self.arn("iam", f"policy/{name}", region=False)
        return arn, {"name": name, "arn": arn}

    def _oidc_provider(self, args, h, inputs):
        arn = self.arn("iam", f"oidc-provider/{str(inputs.get('url', '')).removeprefix('https://')}", region=False)
        return arn, {"arn": arn}

    def _node_group(self, args, h, inputs):
        name = self._physical_name(args, h, {"namePrefix": inputs.get("nodeGroupNamePrefix"), "name": inputs.get("nodeGroupName")})
        cluster = inputs.get("clusterName")
        return f"{cluster}:{name}", {
            "nodeGroupName": name,
            "arn": self.arn("eks", f"nodegroup/{cluster}/{name}/{h[:8]}"),
            "status": "ACTIVE",
        }

    def _addon(self, args, h, inputs):
        cluster, addon = inputs.get("clusterName"), inputs.get("addonName")
        return f"{cluster}:{addon}", {"arn": self.arn("eks", f"addon/{cluster}/{addon}/{h[:8]}")}

    def _sqs_queue(self, args, h, inputs):
        name = self._physical_name(args, h, inputs)
        url = f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT_ID}/{name}"
        return url, {"name": name, "url": url, "arn": self.arn("sqs", name)}

    def _s3_bucket(self, args, h, inputs):
        # S3 names a bucket globally: its id is its name, and its ARN has neither region nor account.
        name = inputs.get("bucket") or f"{inputs.get('bucketPrefix') or args.name + '-'}{h[:12]}"
        return name, {"bucket": name, "arn": f"arn:aws:s3:::{name}", "region": self.region,
                      "bucketDomainName": f"{name}.s3.amazonaws.com", "bucketRegionalDomainName": f"{name}.s3.{self.region}.amazonaws.com"}

    def _event_rule(self, args, h, inputs):
        name = self._physical_name(args, h, inputs)
        return name, {"name": name, "arn": self.arn("events", f"rule/{name}")}

    def _pod_identity(self, args, h, inputs):
        association = f"a-{h[:17]}"
        cluster = inputs.get("clusterName")
        return f"{cluster},{association}", {
            "associationId": association,
            "associationArn": self.arn("eks", f"podidentityassociation/{cluster}/{association}"),
        }

    def _access_entry(self, args, h, inputs):
        cluster, principal = inputs.get("clusterName"), inputs.get("principalArn")
        return f"{cluster}:{principal}", {"accessEntryArn": self.arn("eks", f"access-entry/{cluster}/role/{ACCOUNT_ID}/{h[:8]}")}

    def _s3_bucket(self, args, h, inputs):
        # A bucketPrefix gets a unique suffix from the provider (26 characters), as the real one does.
        name = inputs.get("bucket") or f"{inputs.get('bucketPrefix') or 'terraform-'}{h[:26]}"
        return name, {"bucket": name, "arn": f"arn:aws:s3:::{name}", "bucketRegionalDomainName": f"{name}.s3.{self.region}.amazonaws.com", "region": self.region}

    def _helm_release(self, args, h, inputs):
        name = inputs.get("name") or args.name
        return f"{inputs.get('namespace')}/{name}", {
            "name": name,
            "status": {
                "name": name,
                "namespace": inputs.get("namespace"),
                "chart": inputs.get("chart"),
                "version": inputs.get("version"),
                "revision": 1,
                "status": "deployed",
            },
        }

    def _k8s_service(self, args, h, inputs):
        meta = inputs.get("metadata") or {}
        rid = f"{meta.get('namespace')}/{meta.get('name')}"
        spec = inputs.get("spec") or {}
        if spec.get("type") != "LoadBalancer":
            return rid, {}
        scheme = (meta.get("annotations") or {}).get("service.beta.kubernetes.io/aws-load-balancer-scheme", "internal")
        prefix = "internal-" if scheme == "internal" else ""
        hostname = f"{prefix}k8s-{meta.get('name', '')[:10]}-{h[:10]}.elb.{self.region}.amazonaws.com"
        return rid, {"status": {"loadBalancer": {"ingress": [{"hostname": hostname}]}}}

    def _efs(self, args, h, inputs):
        fs_id = f"fs-{h[:17]}"
        return fs_id, {"arn": self.arn("elasticfilesystem", f"file-system/{fs_id}"), "dnsName": f"{fs_id}.efs.{self.region}.amazonaws.com"}

    def _search_domain(self, args, h, inputs):
        name = inputs["domainName"]
        # VPC domains answer on vpc-<name>-<id>; Dashboards is a path of the same endpoint.
        endpoint = f"vpc-{name}-{h[:26]}.{self.region}.es.amazonaws.com"
        return self.arn("es", f"domain/{name}"), {
            "arn": self.arn("es", f"domain/{name}"),
            "domainId": f"{ACCOUNT_ID}/{name}",
            "endpoint": endpoint,
            "dashboardEndpoint": f"{endpoint}/_dashboards",
        }

    def _msk_cluster(self, args, h, inputs):
        # MSK names a cluster by name and UUID; topic and group ARNs reuse both.
        name, uuid = inputs["clusterName"], f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[:12]}-1"
        arn = self.arn("kafka", f"cluster/{name}/{uuid}")
        brokers = ",".join(f"b-{i}.{name}.{h[:6]}.c1.kafka.{self.region}.amazonaws.com:9098" for i in (1, 2, 3))
        return arn, {"arn": arn, "clusterUuid": uuid, "bootstrapBrokersSaslIam": brokers}

    def _eks_capability(self, args, h, inputs):
        # EKS hosts the Argo CD capability's UI and API at a URL of its own, known once the capability exists.
        name, cluster = inputs["capabilityName"], inputs["clusterName"]
        arn = self.arn("eks", f"capability/{cluster}/{name}/{h[:8]}-{h[8:12]}")
        configuration = dict(inputs.get("configuration") or {})
        if "argoCd" in configuration:
            configuration["argoCd"] = {**configuration["argoCd"], "serverUrl": f"https://{h[:12]}.eks-capabilities.{self.region}.amazonaws.com"}
        return f"{cluster},{name}", {"arn": arn, "configuration": configuration, "version": "mock"}
    def _rds_cluster(self, args, h, inputs):
        # With manage_master_user_password RDS creates the master secret, named rds!cluster-<uuid>-<suffix>.
        name, uuid = inputs["clusterIdentifier"], f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[:12]}"
        secrets = [{"secretArn": self.arn("secretsmanager", f"secret:rds!cluster-{uuid}-{h[:6]}"), "secretStatus": "active",
                    "kmsKeyId": inputs.get("masterUserSecretKmsKeyId")}] if inputs.get("manageMasterUserPassword") else []
        return name, {
            "arn": self.arn("rds", f"cluster:{name}"),
            "clusterResourceId": f"cluster-{h[:26].upper()}",
            "endpoint": f"{name}.cluster-{h[:12]}.{self.region}.rds.amazonaws.com",
            "readerEndpoint": f"{name}.cluster-ro-{h[:12]}.{self.region}.rds.amazonaws.com",
            "port": 3306,
            "masterUserSecrets": secrets,
        }

    def _random_password(self, args, h, inputs):
        length = int(inputs.get("length", 32))
        value = (digest(f"password:{h}", 64) * 2)[:length]
        return f"none-{h[:8]}", {"result": {rpc._special_sig_key: rpc._special_secret_sig, "value": value}}

    def _eks_cluster(self, args, h, inputs, urn: str):
        name = inputs["name"]
        oidc_id = h[:32].upper()
        issuer = f"https://oidc.eks.{self.region}.amazonaws.com/id/{oidc_id}"
        endpoint = f"https://{oidc_id}.gr7.{self.region}.eks.amazonaws.com"
        ca = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t" + h  # deterministic stand-in for the PEM, base64
        sg = f"sg-{h[3:20]}"
        cluster_inputs = self._eks_cluster_child_inputs(args, inputs)
        for transform in args.transforms:
            result = transform(pulumi.ResourceTransformArgs(True, "aws:eks/cluster:Cluster", f"{args.name}-eksCluster", cluster_inputs, pulumi.ResourceOptions()))
            cluster_inputs = result.props if result else cluster_inputs
        cluster_outputs = {
            **cluster_inputs,
            "arn": self.arn("eks", f"cluster/{name}"),
            "endpoint": endpoint,
            "certificateAuthority": {"data": ca},
            "identities": [{"oidcs": [{"issuer": issuer}]}],
            "vpcConfig": {**cluster_inputs["vpcConfig"], "clusterSecurityGroupId": sg, "vpcId": inputs.get("vpcId")},
        }
        dependencies = [ref["urn"] for ref in (inputs.get("serviceRole"),) if isinstance(ref, dict)]
        self.remote_children[urn] = [
            RemoteChild(urn, "aws:eks/cluster:Cluster", f"{args.name}-eksCluster", name, cluster_inputs, cluster_outputs, dependencies),
            # pulumi-eks builds its own Kubernetes provider from the cluster; the platform uses its own stable one.
            RemoteChild(urn, "pulumi:providers:kubernetes", f"{args.name}-eks-k8s", f"provider-{h[:12]}", {}, {}, []),
        ]
        return f"{args.name}-{h[:8]}", {
            "eksCluster": {rpc._special_sig_key: rpc._special_resource_sig, "urn": self.remote_children[urn][0].urn, "id": name},
            "clusterSecurityGroupId": sg,
        }

    def _config_objects(self, args, h, inputs, urn: str):
        """pulumi-kubernetes' yaml/v2 ConfigFile and ConfigGroup apply each object inside the provider, as children
        named `<prefix>:<name>` (cluster-scoped) or `<prefix>:<namespace>/<name>`; the prefix defaults to the
        component's name. A ConfigFile reads one file; a ConfigGroup its `files`, its `yaml` text, then its `objs`."""
        from infra.lib.upstream import SCHEMAS, documents, manifest_documents

        files = [inputs["file"]] if args.typ == CONFIG_FILE else list(inputs.get("files") or [])
        docs = [d for f in files for d in manifest_documents(SCHEMAS.parent / f)]
        vendored = len(docs)
        if args.inputs.get("yaml") is not None:
            if is_secret(args.inputs["yaml"]):
                raise NotImplementedError(f"{args.name}: the offline synth cannot record objects of a secret manifest; keep secrets in Secrets of their own")
            docs += documents(inputs["yaml"])
        # The objects the program passed, as the wire carried them (numbers as doubles, secrets still marked).
        docs += [integral(o) for o in args.inputs.get("objs") or []]
        prefix = inputs.get("resourcePrefix") or args.name
        provider = args.provider.rsplit("::", 1)[0] if args.provider else None
        children = []
        for i, doc in enumerate(docs):
            api, meta = doc["apiVersion"], doc.get("metadata") or {}
            typ = f"kubernetes:{api if '/' in api else 'core/' + api}:{doc['kind']}"
            name = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
            children.append(RemoteChild(urn, typ, f"{prefix}:{name}", name, doc, doc, [], provider, vendored=i < vendored))
        self.remote_children[urn] = children
        return f"{args.name}-{h[:8]}", {"resources": [{rpc._special_sig_key: rpc._special_resource_sig, "urn": c.urn, "id": c.id} for c in children]}

    def _eks_cluster_child_inputs(self, args, inputs: dict) -> dict:
        """The aws:eks/cluster:Cluster that pulumi-eks 4.x (nodejs/eks/cluster/cluster.ts) declares for these arguments."""
        role = inputs.get("serviceRole")
        vpc = {
            "subnetIds": [*(inputs.get("publicSubnetIds") or []), *(inputs.get("privateSubnetIds") or [])],
            "endpointPrivateAccess": inputs.get("endpointPrivateAccess"),
            "endpointPublicAccess": inputs.get("endpointPublicAccess"),
        }
        if inputs.get("publicAccessCidrs"):
            vpc["publicAccessCidrs"] = inputs["publicAccessCidrs"]
        child = {
            "name": inputs["name"],
            "roleArn": self.outputs_of(role["urn"]).get("arn") if isinstance(role, dict) else None,
            "bootstrapSelfManagedAddons": inputs.get("bootstrapSelfManagedAddons", True),
            "vpcConfig": vpc,
            "version": inputs.get("version"),
            "enabledClusterLogTypes": inputs.get("enabledClusterLogTypes"),
            "tags": {"Name": f"{args.name}-eksCluster", **(inputs.get("clusterTags") or {}), **(inputs.get("tags") or {})},
            "deletionProtection": inputs.get("deletionProtection"),
        }
        if inputs.get("encryptionConfigKeyArn"):
            child["encryptionConfig"] = {"provider": {"keyArn": inputs["encryptionConfigKeyArn"]}, "resources": ["secrets"]}
        if inputs.get("authenticationMode"):
            child["accessConfig"] = {"authenticationMode": inputs["authenticationMode"], "bootstrapClusterCreatorAdminPermissions": True}
        if inputs.get("kubernetesServiceIpAddressRange"):
            child["kubernetesNetworkConfig"] = {"serviceIpv4Cidr": inputs["kubernetesServiceIpAddressRange"], "ipFamily": "ipv4"}
        return {k: v for k, v in child.items() if v is not None}

    # -- invokes ------------------------------------------------------------------------
    def call(self, args: MockCallArgs) -> dict:
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{self.region}{s}" for s in "abcdef"]
            return {"names": names, "zoneIds": [f"{self.region[:3]}{self.region[-1]}-az{i + 1}" for i in range(6)]}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/synth", "userId": "AIDASYNTH"}
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com"}
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region}
        raise NotImplementedError(f"the offline synth has no mock for the invoke {args.token}; add one in infra/offline/mocks.py")


CONFIG_FILE = "kubernetes:yaml/v2:ConfigFile"
# Its own: the module loads by path, with nothing of the project importable (tests/test_synth.py).
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"


@dataclass(frozen=True)
class RemoteChild:
    parent: str  # the component's URN
    type: str
    name: str
    id: str
    inputs: dict
    outputs: dict
    dependencies: list[str]
    # The component's provider, where its children use it (a ConfigFile's objects go through the cluster's).
    provider: Optional[str] = None
    # Parsed from a file of the repository: no secret in it, and its numbers are the file's.
    vendored: bool = False

    @property
    def urn(self) -> str:
        stack_part, parent_type, _ = self.parent.rsplit("::", 2)
        return f"{stack_part}::{parent_type}${self.type}::{self.name}"


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    parent: Optional[str]
    custom: bool
    provider: Optional[str]
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    inputs: dict
    protect: bool = False
    transforms: int = 0
    outputs: dict = field(default_factory=dict)
    vendored: bool = False
    # How the engine would update it: what it leaves, what replaces it, and whether the old one goes first.
    lifecycle: dict = field(default_factory=dict)


def _state_struct(struct: struct_pb2.Struct, inputs: dict, state: dict, typ: str) -> struct_pb2.Struct:
    """The state on the wire. Where it echoes every input unchanged, the inputs go back as they came and only what
    the provider adds is serialized: a second walk of large objects costs a registration as much again. (A Helm
    release's values keep their nulls on the way in; serializing them again drops the nulls, as the SDK does.)"""
    if typ == HELM_RELEASE or any(state.get(k) is not v for k, v in inputs.items()):
        return _sync_await(rpc.serialize_properties(state, {}))
    added = _sync_await(rpc.serialize_properties({k: v for k, v in state.items() if k not in inputs}, {}))
    out = struct_pb2.Struct()
    out.CopyFrom(struct)
    out.MergeFrom(added)
    return out


def _lifecycle(request) -> dict:
    options = {"ignoreChanges": list(request.ignoreChanges), "replaceOnChanges": list(request.replaceOnChanges),
               "deleteBeforeReplace": request.deleteBeforeReplace}
    return {k: v for k, v in options.items() if v}


def _identity(state: dict) -> dict:
    return {k: state[k] for k in ("apiVersion", "kind", "metadata") if k in state}


class RecordingMonitor(MockMonitor):
    """The mock monitor, also keeping every registration as the engine would see it."""

    mocks: PlatformMocks

    def __init__(self, mocks: PlatformMocks):
        super().__init__(mocks)
        self.registrations: dict[str, Registration] = {}
        mocks.outputs_of = lambda urn: self.registrations[urn].outputs if urn in self.registrations else {}

    def RegisterResource(self, request):
        # The base monitor's registration, deserializing the inputs once for the mock and the record.
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == "pulumi:pulumi:Stack":
            return resource_pb2.RegisterResourceResponse(urn=urn)
        _ensure_event_loop()
        # A component's inputs may reference resources; the record keeps their URN and id, as the engine shows them.
        struct = request.object if request.custom else _plain_resource_references(request.object)
        inputs = rpc.deserialize_properties(struct)
        if request.type == HELM_RELEASE and "values" in inputs:
            inputs["values"] = _keep_nulls(struct.fields["values"], inputs["values"])
        resource_id, state = self.mocks.state_for(
            MockResourceArgs(
                typ=request.type,
                name=request.name,
                inputs=inputs,
                provider=request.provider,
                resource_id=request.importId,
                custom=request.custom or False,
                transforms=_resolve_callbacks(request.transforms),
            ),
            urn,
        )
        self.resources[urn] = MockMonitor.ResourceRegistration(urn, resource_id, state)
        self.registrations[urn] = Registration(
            urn=urn,
            type=request.type,
            name=request.name,
            parent=request.parent or None,
            custom=bool(request.custom),
            provider=request.provider.rsplit("::", 1)[0] if request.provider else None,
            dependencies=sorted(set(request.dependencies)),
            property_dependencies={k: sorted(set(v.urns)) for k, v in sorted(request.propertyDependencies.items())},
            inputs=integral(inputs),
            protect=bool(request.protect),
            transforms=len(request.transforms),
            outputs=integral(state),
            lifecycle=_lifecycle(request),
        )
        for child in self.mocks.remote_children.pop(urn, []):
            # The SDK reads a component's children back (getResource) to hand out resource references. The program
            # never reads the outputs of an object a ConfigFile or ConfigGroup applied, so that read returns the
            # object's identity: whole CRD schemas took a third of the synth to round-trip through protobuf.
            applied = request.type in (CONFIG_FILE, CONFIG_GROUP)
            read_back = _identity(child.outputs) if applied else child.outputs
            self.resources[child.urn] = MockMonitor.ResourceRegistration(child.urn, child.id, read_back)
            self.registrations[child.urn] = Registration(
                urn=child.urn,
                type=child.type,
                name=child.name,
                parent=child.parent,
                custom=True,
                provider=child.provider,
                # The provider applies them once the component's dependencies exist (its Construct waits for them).
                dependencies=sorted(set(child.dependencies) | (set(request.dependencies) if applied else set())),
                property_dependencies={},
                # An applied object is recorded as the provider applies it: its numbers are already the program's.
                inputs=child.inputs if applied else integral(child.inputs),
                outputs={**child.outputs, "id": child.id} if applied else integral({**child.outputs, "id": child.id}),
                vendored=child.vendored,
            )
        return resource_pb2.RegisterResourceResponse(urn=urn, id=resource_id, object=_state_struct(struct, inputs, state, request.type))

    def RegisterResourceOutputs(self, request):
        if request.urn in self.registrations:
            self.registrations[request.urn].outputs = integral(rpc.deserialize_properties(request.outputs))
        return super().RegisterResourceOutputs(request)
