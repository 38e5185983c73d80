"""AWS rules: the control plane, encryption, network exposure, IAM, node metadata and tags."""
from __future__ import annotations

import ipaddress
import json

from .base import ADVISORY, MANDATORY, dig, resource_rule, stack_rule

EKS_COMPONENT = "eks:index:Cluster"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
MSK_CLUSTER = "aws:msk/cluster:Cluster"
MSK_SERVERLESS = "aws:msk/serverlessCluster:ServerlessCluster"
CONTROL_PLANE_LOG_TYPES = {"api", "audit", "authenticator", "controllerManager", "scheduler"}
REQUIRED_TAGS = ("environment", "project", "owner", "cost-center")
# Resources of these types accept tags; every one the platform creates must carry the required set.
TAGGABLE_TYPES = frozenset(
    {
        "aws:ec2/vpc:Vpc",
        "aws:rds/cluster:Cluster",
        "aws:rds/clusterInstance:ClusterInstance",
        "aws:rds/subnetGroup:SubnetGroup",
        "aws:ec2/subnet:Subnet",
        "aws:ec2/internetGateway:InternetGateway",
        "aws:ec2/eip:Eip",
        "aws:ec2/natGateway:NatGateway",
        "aws:ec2/routeTable:RouteTable",
        "aws:ec2/vpcEndpoint:VpcEndpoint",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
        "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
        "aws:ec2/flowLog:FlowLog",
        "aws:ec2/launchTemplate:LaunchTemplate",
        "aws:kms/key:Key",
        "aws:cloudwatch/logGroup:LogGroup",
        "aws:cloudwatch/eventRule:EventRule",
        "aws:iam/role:Role",
        "aws:iam/policy:Policy",
        "aws:eks/nodeGroup:NodeGroup",
        "aws:eks/addon:Addon",
        "aws:eks/podIdentityAssociation:PodIdentityAssociation",
        "aws:eks/accessEntry:AccessEntry",
        "aws:eks/capability:Capability",
        "aws:sqs/queue:Queue",
        "aws:efs/fileSystem:FileSystem",
        "aws:s3/bucket:Bucket",
        "aws:efs/accessPoint:AccessPoint",
        "aws:opensearch/domain:Domain",
        MSK_CLUSTER,
        MSK_SERVERLESS,
        "aws:appautoscaling/target:Target",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        "aws:budgets/budget:Budget",
        "aws:iam/openIdConnectProvider:OpenIdConnectProvider",
        "aws:s3/bucket:Bucket",
        EKS_CLUSTER,
        EKS_COMPONENT,
    }
)
WORLD = ipaddress.IPv4Network("0.0.0.0/0")
S3_BUCKET = "aws:s3/bucket:Bucket"
S3_PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
S3_ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
S3_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
RDS_CLUSTER = "aws:rds/cluster:Cluster"
RDS_CLUSTER_INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
RDS_INSTANCE = "aws:rds/instance:Instance"


def _endpoint(props: dict, resource_type: str) -> tuple[bool, list[str]]:
    if resource_type == EKS_COMPONENT:
        return bool(props.get("endpointPublicAccess")), list(props.get("publicAccessCidrs") or [])
    vpc = props.get("vpcConfig") or {}
    # The EKS API opens a public endpoint to the world unless told otherwise.
    return vpc.get("endpointPublicAccess", True), list(vpc.get("publicAccessCidrs") or ["0.0.0.0/0"])


@resource_rule(
    "eks-endpoint-not-world-open",
    "The EKS API endpoint is never reachable from 0.0.0.0/0: the API is the keys to every workload and secret.",
    "Set cluster.endpoint.publicAccess: false, or list only your office/VPN CIDRs in publicAccessCidrs.",
    MANDATORY,
    [EKS_COMPONENT, EKS_CLUSTER],
)
def eks_endpoint_not_world_open(props, args):
    public, cidrs = _endpoint(props, args.resource_type)
    if public and (not cidrs or any(ipaddress.IPv4Network(c, strict=False) == WORLD for c in cidrs)):
        yield "the public EKS endpoint is open to 0.0.0.0/0"


@resource_rule(
    "eks-endpoint-private",
    "The EKS API endpoint is private only, with no public endpoint at all: the smallest attack surface.",
    "Set cluster.endpoint.publicAccess: false and reach the API through the VPC (VPN, bastion, CI runners in the VPC).",
    ADVISORY,
    [EKS_COMPONENT, EKS_CLUSTER],
)
def eks_endpoint_private(props, args):
    public, _ = _endpoint(props, args.resource_type)
    if public:
        yield "the EKS API endpoint has public access enabled"


@resource_rule(
    "eks-control-plane-logging",
    "All five EKS control-plane log types are sent to CloudWatch, for audit and incident forensics.",
    "Enable api, audit, authenticator, controllerManager and scheduler logs.",
    MANDATORY,
    [EKS_COMPONENT, EKS_CLUSTER],
)
def eks_control_plane_logging(props, args):
    missing = CONTROL_PLANE_LOG_TYPES - set(props.get("enabledClusterLogTypes") or [])
    if missing:
        yield f"control-plane log types not enabled: {', '.join(sorted(missing))}"


@resource_rule(
    "eks-secrets-encryption",
    "Kubernetes secrets are envelope-encrypted with a customer-managed KMS key, so etcd snapshots never hold them in clear.",
    "Pass a KMS key ARN as the cluster's encryption key.",
    MANDATORY,
    [EKS_COMPONENT, EKS_CLUSTER],
)
def eks_secrets_encryption(props, args):
    if args.resource_type == EKS_COMPONENT:
        ok = bool(props.get("encryptionConfigKeyArn"))
    else:
        ok = "secrets" in (dig(props, "encryptionConfig", "resources") or [])
    if not ok:
        yield "secrets are not encrypted with a KMS key"


@resource_rule(
    "eks-api-authentication",
    "The cluster authenticates through access entries only (mode API): auditable in IAM, no aws-auth ConfigMap to drift.",
    "Set authenticationMode to API and grant access through access entries.",
    MANDATORY,
    [EKS_COMPONENT, EKS_CLUSTER],
)
def eks_api_authentication(props, args):
    mode = props.get("authenticationMode") if args.resource_type == EKS_COMPONENT else dig(props, "accessConfig", "authenticationMode")
    if mode != "API":
        yield f"authentication mode is {mode!r}, not 'API'"


@resource_rule(
    "kms-key-rotation",
    "Every customer-managed KMS key rotates yearly, limiting what one exposed key version can decrypt.",
    "Set enableKeyRotation: true on the key.",
    MANDATORY,
    ["aws:kms/key:Key"],
)
def kms_key_rotation(props, args):
    if not props.get("enableKeyRotation"):
        yield "KMS key rotation is off"


@resource_rule(
    "node-imdsv2",
    "Every node definition (launch templates, Karpenter EC2NodeClasses) requires IMDSv2 with a hop limit of 1, so pods cannot read the node role's credentials.",
    "Set metadataOptions httpTokens: required and httpPutResponseHopLimit: 1.",
    MANDATORY,
    ["aws:ec2/launchTemplate:LaunchTemplate", "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"],
)
def node_imdsv2(props, args):
    meta = (props.get("spec") or {}).get("metadataOptions") if args.resource_type.startswith("kubernetes:") else props.get("metadataOptions")
    meta = meta or {}
    if meta.get("httpTokens") != "required":
        yield "IMDSv2 is not required (httpTokens is not 'required')"
    if meta.get("httpPutResponseHopLimit") != 1:
        yield f"metadata hop limit is {meta.get('httpPutResponseHopLimit')!r}, not 1"


@resource_rule(
    "default-security-group-closed",
    "The VPC's default security group has no rules, so nothing that forgets its own group is left open.",
    "Declare the default security group with empty ingress and egress.",
    MANDATORY,
    ["aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"],
)
def default_security_group_closed(props, args):
    if props.get("ingress") or props.get("egress"):
        yield "the default security group has rules"


def _statements(document) -> list[dict]:
    doc = json.loads(document) if isinstance(document, str) else (document or {})
    statements = doc.get("Statement", [])
    return statements if isinstance(statements, list) else [statements]


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


@resource_rule(
    "iam-no-unscoped-wildcard",
    "No IAM policy allows wildcard actions on every resource without a condition: least privilege for controllers and nodes.",
    "Name the actions, or scope the statement to resource ARNs or with a Condition on tags.",
    MANDATORY,
    ["aws:iam/policy:Policy", "aws:iam/rolePolicy:RolePolicy"],
)
def iam_no_unscoped_wildcard(props, args):
    document = props.get("policy")
    if not isinstance(document, (str, dict)):
        return
    for st in _statements(document):
        if st.get("Effect") != "Allow" or st.get("Condition"):
            continue
        actions, resources = _as_list(st.get("Action", [])), _as_list(st.get("Resource", []))
        wild = [a for a in actions if a == "*" or a.endswith(":*")]
        if wild and "*" in resources:
            yield f"statement {st.get('Sid', '')!r} allows {', '.join(wild)} on Resource '*' with no condition"


@resource_rule(
    "required-tags",
    "Every taggable AWS resource carries the environment, project, owner and cost-center tags, for cost allocation and ownership.",
    "Build tags with PlatformConfig.tags_for(name); set owner and costCenter in the stack's ml-platform:tags.",
    ADVISORY,
    TAGGABLE_TYPES,
)
def required_tags(props, args):
    tags = props.get("tags") or {}
    missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
    if missing:
        yield f"missing tags: {', '.join(missing)}"


WORLD_CIDRS = {"0.0.0.0/0", "::/0"}
GATEWAY_LB_ROLE = ("ml-platform.io/role", "gateway-lb")
GATEWAY_LISTENER_PORTS = {80, 443}


@resource_rule(
    "security-group-no-world-ingress",
    "No security group admits 0.0.0.0/0 (or ::/0), except the ingress gateway load balancer on its listener ports: one audited entry point.",
    "Restrict the rule to known CIDRs or a source security group; only the gateway-lb group may face the internet, on 80/443.",
    MANDATORY,
    ["aws:ec2/securityGroup:SecurityGroup", "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "aws:ec2/securityGroupRule:SecurityGroupRule"],
)
def security_group_no_world_ingress(props, args):
    is_gateway_lb = (props.get("tags") or {}).get(GATEWAY_LB_ROLE[0]) == GATEWAY_LB_ROLE[1]
    if args.resource_type == "aws:ec2/securityGroup:SecurityGroup":
        rules = props.get("ingress") or []
    elif args.resource_type == "aws:ec2/securityGroupRule:SecurityGroupRule":
        rules = [props] if props.get("type") == "ingress" else []
    else:
        rules = [{**props, "cidrBlocks": [props.get("cidrIpv4")], "ipv6CidrBlocks": [props.get("cidrIpv6")]}]
    for rule in rules:
        cidrs = set(rule.get("cidrBlocks") or []) | set(rule.get("ipv6CidrBlocks") or [])
        if not cidrs & WORLD_CIDRS:
            continue
        ports = set(range(int(rule.get("fromPort", 0)), int(rule.get("toPort", 65535)) + 1))
        if not (is_gateway_lb and ports <= GATEWAY_LISTENER_PORTS):
            yield f"ingress from the whole internet on ports {rule.get('fromPort')}-{rule.get('toPort')}"


@resource_rule(
    "efs-encrypted-with-cmk",
    "EFS file systems are encrypted at rest with a customer-managed KMS key, so access to the data is governed by the key policy.",
    "Set encrypted: true and kmsKeyId to a KMS key of the platform.",
    MANDATORY,
    ["aws:efs/fileSystem:FileSystem"],
)
def efs_encrypted_with_cmk(props, args):
    if not props.get("encrypted"):
        yield "file system is not encrypted"
    elif not props.get("kmsKeyId"):
        yield "file system uses the AWS-managed key, not a customer-managed one"


@resource_rule(
    "stateful-storage-protected",
    "File systems holding datasets, checkpoints and models, the teams' S3 model stores, and the artifact buckets of the model registry and the pipelines, are protected from deletion by Pulumi.",
    "Set ml-platform:storage.protect: true (the file system and the S3 model stores), ml-platform:registry.protect: true and ml-platform:kubeflow.pipelines.artifacts.protect: true (the artifact buckets) for the environment.",
    ADVISORY,
    ["aws:efs/fileSystem:FileSystem", "aws:s3/bucket:Bucket"],
)
def stateful_storage_protected(props, args):
    if args.opts.protect:
        return
    if args.resource_type == "aws:s3/bucket:Bucket":
        yield "bucket is not protected; a destroy would delete it with the artifacts it holds"
    else:
        yield "file system is not protected; a destroy would delete every dataset and checkpoint on it"


@resource_rule(
    "msk-authenticated-encrypted",
    "Every MSK cluster authenticates clients with IAM and speaks TLS only: no unauthenticated access, no plaintext listener.",
    "Keep streaming on the platform's settings: SASL/IAM on, unauthenticated off, clientBroker TLS, in-cluster encryption on.",
    MANDATORY,
    [MSK_CLUSTER, MSK_SERVERLESS],
)
def msk_authenticated_encrypted(props, args):
    auth = props.get("clientAuthentication") or {}
    sasl = auth.get("sasl") or {}
    if args.resource_type == MSK_SERVERLESS:
        if not (sasl.get("iam") or {}).get("enabled"):
            yield "the MSK Serverless cluster does not enable IAM access control"
        return
    # The provider turns unauthenticated access on when no authentication is given at all.
    if auth.get("unauthenticated", not auth):
        yield "the MSK cluster allows unauthenticated clients"
    if not sasl.get("iam"):
        yield "the MSK cluster does not enable IAM access control (clientAuthentication.sasl.iam)"
    transit = dig(props, "encryptionInfo", "encryptionInTransit") or {}
    # MSK's default for clientBroker is TLS; only an explicit PLAINTEXT or TLS_PLAINTEXT opens a plaintext listener.
    if transit.get("clientBroker", "TLS") != "TLS":
        yield f"the MSK cluster accepts plaintext clients (clientBroker {transit.get('clientBroker')})"
    if transit.get("inCluster") is False:
        yield "the MSK brokers replicate in plaintext (encryptionInTransit.inCluster false)"


def _public_statement(statement: dict) -> bool:
    """An Allow to everyone with no condition: anyone on the internet may do what it lists."""
    principal = statement.get("Principal")
    everyone = principal == "*" or (isinstance(principal, dict) and "*" in _as_list(principal.get("AWS")))
    return statement.get("Effect") == "Allow" and everyone and not statement.get("Condition")


@stack_rule(
    "data-stores-private-encrypted",
    "Every S3 bucket and database is private and encrypted: a bucket blocks all public access and encrypts with KMS, "
    "no bucket policy grants everyone, and every RDS/Aurora database encrypts its storage and has no public endpoint.",
    "Create buckets with a BucketPublicAccessBlock (all four settings true) and an aws:kms BucketServerSideEncryptionConfiguration; "
    "set storageEncrypted: true and publiclyAccessible: false on databases.",
    MANDATORY,
)
def data_stores_private_encrypted(resources, settings):
    # A bucket's settings name it by id, which the engine does not show policies before it exists; their dependency does.
    blocked = {
        d.urn for r in resources if r.resource_type == S3_PUBLIC_ACCESS_BLOCK
        and all(r.props.get(k) is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
        for d in r.dependencies
    }
    encrypted = {
        d.urn for r in resources if r.resource_type == S3_ENCRYPTION
        and all(dig(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm") in ("aws:kms", "aws:kms:dsse") for rule in r.props.get("rules") or [{}])
        for d in r.dependencies
    }
    for r in resources:
        if r.resource_type == S3_BUCKET:
            if r.urn not in blocked:
                yield "bucket has no BucketPublicAccessBlock blocking all four kinds of public access", r.urn
            if r.urn not in encrypted:
                yield "bucket has no KMS default encryption (BucketServerSideEncryptionConfiguration with aws:kms)", r.urn
        elif r.resource_type == S3_POLICY and isinstance(r.props.get("policy"), str):
            if any(_public_statement(st) for st in _statements(r.props["policy"])):
                yield "bucket policy allows everyone without a condition", r.urn
        elif r.resource_type in (RDS_CLUSTER, RDS_INSTANCE) and r.props.get("storageEncrypted") is not True:
            yield "database storage is not encrypted (storageEncrypted)", r.urn
        if r.resource_type in (RDS_CLUSTER_INSTANCE, RDS_INSTANCE) and r.props.get("publiclyAccessible") is True:
            yield "database instance has a public endpoint (publiclyAccessible)", r.urn
