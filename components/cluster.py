"""EKS control plane (pulumi-eks), system node group, managed add-ons and the one Kubernetes provider."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from infra.config import PlatformConfig
from infra.lib.iam import NODE_MANAGED_POLICIES, POD_IDENTITY_TRUST, role_with_policies, service_trust_policy
from infra.lib.kms import encryption_key, via_service

CONTROL_PLANE_LOG_TYPES = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
# Critical add-ons (CoreDNS, EBS CSI, Karpenter) tolerate this taint by default; nothing else lands here.
SYSTEM_TAINT = {"key": "CriticalAddonsOnly", "value": "true", "effect": "NoSchedule"}
SYSTEM_POOL_LABEL = {"ml-platform.io/pool": "system"}
SYSTEM_TOLERATION = {"key": "CriticalAddonsOnly", "operator": "Exists"}


def creator_admin_transform(enabled: bool):
    """pulumi-eks has no input for the creator's bootstrap admin; set it on the cluster it creates."""

    def transform(args: pulumi.ResourceTransformArgs) -> Optional[pulumi.ResourceTransformResult]:
        if args.type_ != "aws:eks/cluster:Cluster":
            return None
        access = {**(args.props.get("accessConfig") or {}), "bootstrapClusterCreatorAdminPermissions": enabled}
        return pulumi.ResourceTransformResult({**args.props, "accessConfig": access}, args.opts)

    return transform


def kubeconfig(cluster_name: str, endpoint: str, certificate_authority: str, region: str) -> str:
    """A kubeconfig with no token in it: the same inputs always give the same text."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": certificate_authority}}],
            "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
            "current-context": cluster_name,
            "users": [
                {
                    "name": cluster_name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region, "--output", "json"],
                            "interactiveMode": "Never",
                        }
                    },
                }
            ],
        },
        sort_keys=True,
    )


@dataclass(frozen=True)
class ClusterArgs:
    config: PlatformConfig
    vpc_id: pulumi.Input[str]
    private_subnet_ids: list[pulumi.Output[str]]
    public_subnet_ids: list[pulumi.Output[str]]
    logs_key_arn: pulumi.Input[str]


class Cluster(pulumi.ComponentResource):
    name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    version: str
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider
    system_node_group: aws.eks.NodeGroup
    # Node group and add-ons that everything scheduling on the cluster waits for.
    critical_addons: list[pulumi.Resource]
    default_storage_class: str = "gp3"
    system_node_selector: dict[str, str] = SYSTEM_POOL_LABEL
    system_toleration: dict[str, str] = SYSTEM_TOLERATION

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:cluster:Cluster", name, None, opts)
        cfg, cc = args.config, args.config.cluster
        cluster_name = cfg.cluster_name
        child = pulumi.ResourceOptions(parent=self)

        secrets_key = encryption_key(
            f"{name}-secrets",
            alias=f"{cluster_name}-eks-secrets",
            description=f"EKS secrets envelope encryption for {cluster_name}",
            tags=cfg.tags_for(f"{cluster_name}-secrets"),
            parent=self,
            service_use=[via_service("eks", cfg.region)],
        )
        # EKS would create this group with no retention; owning it first sets retention and lets destroy remove it.
        control_plane_logs = aws.cloudwatch.LogGroup(
            f"{name}-control-plane",
            aws.cloudwatch.LogGroupArgs(
                name=f"/aws/eks/{cluster_name}/cluster",
                retention_in_days=cc.log_retention_days,
                kms_key_id=args.logs_key_arn,
                tags=cfg.tags_for(f"{cluster_name}-control-plane"),
            ),
            opts=child,
        )

        # pulumi-eks would create this role untagged, out of the program's sight; owning it keeps it visible to policy.
        service_role = role_with_policies(
            f"{name}-service",
            trust=service_trust_policy("eks.amazonaws.com", ("sts:AssumeRole", "sts:TagSession")),
            managed=["arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"],
            tags=cfg.tags_for(f"{cluster_name}-service"),
            parent=self,
        )
        control_plane = eks.Cluster(
            f"{name}-eks",
            eks.ClusterArgs(
                name=cluster_name,
                version=cc.kubernetes_version,
                vpc_id=args.vpc_id,
                private_subnet_ids=args.private_subnet_ids,
                public_subnet_ids=args.public_subnet_ids,
                authentication_mode=eks.AuthenticationMode.API,
                service_role=service_role.role,
                encryption_config_key_arn=secrets_key.arn,
                enabled_cluster_log_types=CONTROL_PLANE_LOG_TYPES,
                endpoint_private_access=cc.endpoint.private_access,
                endpoint_public_access=cc.endpoint.public_access,
                public_access_cidrs=cc.endpoint.public_access_cidrs if cc.endpoint.public_access else None,
                kubernetes_service_ip_address_range=cc.service_ipv4_cidr,
                # Created below, tagged (pulumi-eks sets no tags on it).
                create_oidc_provider=False,
                deletion_protection=cc.deletion_protection,
                # Every add-on is an EKS managed add-on pinned below; none is bootstrapped or installed by pulumi-eks.
                skip_default_node_group=True,
                skip_default_security_groups=True,
                bootstrap_self_managed_addons=False,
                use_default_vpc_cni=True,
                coredns_addon_options=eks.CoreDnsAddonOptionsArgs(enabled=False),
                kube_proxy_addon_options=eks.KubeProxyAddonOptionsArgs(enabled=False),
                tags=cfg.tags_for(cluster_name),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[control_plane_logs, *service_role.attachments],
                transforms=[creator_admin_transform(cc.access.cluster_creator_admin)],
            ),
        )
        eks_cluster = control_plane.eks_cluster
        # An output of the cluster (not the plain string) so that everything using it waits for the cluster.
        self.name = eks_cluster.name
        self.endpoint = eks_cluster.endpoint
        self.version = cc.kubernetes_version
        self.security_group_id = control_plane.cluster_security_group_id
        issuer_url = eks_cluster.identities[0].oidcs[0].issuer
        # For IAM roles for service accounts (the platform itself uses Pod Identity); IAM fetches the thumbprint.
        oidc_provider = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc",
            aws.iam.OpenIdConnectProviderArgs(url=issuer_url, client_id_lists=["sts.amazonaws.com"], tags=cfg.tags_for(f"{cluster_name}-oidc")),
            opts=child,
        )
        self.oidc_provider_arn = oidc_provider.arn
        self.oidc_issuer = issuer_url.apply(lambda url: url.removeprefix("https://"))
        # Kubernetes objects need the deploying identity's access: the provider waits for these.
        admin_access: list[pulumi.Resource] = []
        for i, arn in enumerate(cc.access.admin_role_arns):
            entry = aws.eks.AccessEntry(
                f"{name}-admin-{i}",
                aws.eks.AccessEntryArgs(cluster_name=self.name, principal_arn=arn, type="STANDARD", tags=cfg.tags_for(f"{cluster_name}-admin-{i}")),
                opts=child,
            )
            association = aws.eks.AccessPolicyAssociation(
                f"{name}-admin-{i}",
                aws.eks.AccessPolicyAssociationArgs(
                    cluster_name=self.name,
                    principal_arn=entry.principal_arn,
                    policy_arn=CLUSTER_ADMIN_POLICY,
                    access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                ),
                opts=pulumi.ResourceOptions(parent=entry),
            )
            admin_access += [entry, association]

        addon = _AddonFactory(self, cfg, self.name)
        # Networking and identity must run before nodes can become Ready.
        node_prerequisites = [
            # The CNI's own agent enforces the teams' NetworkPolicies; without it they would be ignored.
            addon("vpc-cni", cc.addons.vpc_cni, configuration={"enableNetworkPolicy": "true"}),
            addon("kube-proxy", cc.addons.kube_proxy),
            addon("eks-pod-identity-agent", cc.addons.eks_pod_identity_agent),
        ]
        node_role = role_with_policies(
            f"{name}-system-nodes",
            trust=service_trust_policy("ec2.amazonaws.com"),
            managed=NODE_MANAGED_POLICIES,
            tags=cfg.tags_for(f"{cluster_name}-system-nodes"),
            parent=self,
        )
        self.system_node_group = self._system_node_group(
            name, cfg, node_role.role, args.private_subnet_ids, [*node_prerequisites, *node_role.attachments]
        )
        after_nodes = pulumi.ResourceOptions(depends_on=[self.system_node_group])
        coredns = addon("coredns", cc.addons.coredns, opts=after_nodes)
        ebs_csi_role = role_with_policies(
            f"{name}-ebs-csi",
            trust=POD_IDENTITY_TRUST,
            managed=["arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"],
            tags=cfg.tags_for(f"{cluster_name}-ebs-csi"),
            parent=self,
        )
        ebs_csi = addon(
            "aws-ebs-csi-driver",
            cc.addons.aws_ebs_csi_driver,
            service_account="ebs-csi-controller-sa",
            role_arn=ebs_csi_role.role.arn,
            opts=pulumi.ResourceOptions(depends_on=[self.system_node_group, *ebs_csi_role.attachments]),
        )

        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(self.name, self.endpoint, eks_cluster.certificate_authority.data).apply(
                lambda v: kubeconfig(v[0], v[1], v[2], cfg.region)
            )
        )
        self.provider = k8s.Provider(
            f"{name}-k8s",
            k8s.ProviderArgs(kubeconfig=self.kubeconfig, enable_server_side_apply=True),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[control_plane, *admin_access]),
        )
        self.critical_addons = [self.system_node_group, coredns, ebs_csi]
        # A release whose chart renders a claim on it (Helm waits for the claim) depends on this.
        self.default_storage_class_resource = k8s.storage.v1.StorageClass(
            f"{name}-gp3",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=self.default_storage_class,
                annotations={"storageclass.kubernetes.io/is-default-class": "true"},
                labels={"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "ml-platform"},
            ),
            provisioner="ebs.csi.aws.com",
            parameters={"type": "gp3", "encrypted": "true", "fsType": "ext4"},
            reclaim_policy="Delete",
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[ebs_csi]),
        )

        self.register_outputs(
            {
                "name": self.name,
                "endpoint": self.endpoint,
                "oidcProviderArn": self.oidc_provider_arn,
                "securityGroupId": self.security_group_id,
            }
        )

    def _system_node_group(
        self,
        name: str,
        cfg: PlatformConfig,
        role: aws.iam.Role,
        subnet_ids: list[pulumi.Output[str]],
        depends_on: list[pulumi.Resource],
    ) -> aws.eks.NodeGroup:
        ng = cfg.cluster.system_node_group
        child = pulumi.ResourceOptions(parent=self)
        launch_template = aws.ec2.LaunchTemplate(
            f"{name}-system",
            aws.ec2.LaunchTemplateArgs(
                description=f"System node group of {cfg.cluster_name}",
                # Hop limit 1 keeps pods off the node role's credentials.
                metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                    http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
                ),
                block_device_mappings=[
                    aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                        device_name="/dev/xvda",
                        ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                            volume_size=ng.disk_size_gib, volume_type="gp3", encrypted="true", delete_on_termination="true"
                        ),
                    )
                ],
                tag_specifications=[
                    aws.ec2.LaunchTemplateTagSpecificationArgs(
                        resource_type=kind, tags=cfg.tags_for(f"{cfg.cluster_name}-system")
                    )
                    for kind in ("instance", "volume")
                ],
                update_default_version=True,
                tags=cfg.tags_for(f"{cfg.cluster_name}-system"),
            ),
            opts=child,
        )
        return aws.eks.NodeGroup(
            f"{name}-system",
            aws.eks.NodeGroupArgs(
                cluster_name=self.name,
                node_group_name_prefix="system-",
                node_role_arn=role.arn,
                subnet_ids=subnet_ids,
                version=cfg.cluster.kubernetes_version,
                release_version=ng.release_version,
                ami_type=ng.ami_type,
                capacity_type=ng.capacity_type,
                instance_types=ng.instance_types,
                scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                    min_size=ng.min_size, desired_size=ng.desired_size, max_size=ng.max_size
                ),
                update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
                launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                    id=launch_template.id, version=launch_template.latest_version.apply(str)
                ),
                labels=SYSTEM_POOL_LABEL,
                taints=[aws.eks.NodeGroupTaintArgs(key=SYSTEM_TAINT["key"], value=SYSTEM_TAINT["value"], effect="NO_SCHEDULE")],
                tags=cfg.tags_for(f"{cfg.cluster_name}-system"),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=depends_on,
                # The autoscaler, not Pulumi, owns the current size.
                ignore_changes=["scalingConfig.desiredSize"],
            ),
        )


class _AddonFactory:
    """Creates pinned EKS managed add-ons of one cluster."""

    def __init__(self, parent: pulumi.ComponentResource, cfg: PlatformConfig, cluster_name: pulumi.Output[str]):
        self._parent, self._cfg, self._cluster_name = parent, cfg, cluster_name

    def __call__(
        self,
        addon_name: str,
        version: str,
        service_account: str | None = None,
        role_arn: pulumi.Input[str] | None = None,
        configuration: dict | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> aws.eks.Addon:
        identity = (
            [aws.eks.AddonPodIdentityAssociationArgs(service_account=service_account, role_arn=role_arn)]
            if service_account
            else None
        )
        return aws.eks.Addon(
            f"{self._cfg.cluster_name}-{addon_name}",
            aws.eks.AddonArgs(
                cluster_name=self._cluster_name,
                addon_name=addon_name,
                addon_version=version,
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="OVERWRITE",
                pod_identity_associations=identity,
                configuration_values=json.dumps(configuration, sort_keys=True) if configuration else None,
                tags=self._cfg.tags_for(f"{self._cfg.cluster_name}-{addon_name}"),
            ),
            opts=pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self._parent), opts),
        )
