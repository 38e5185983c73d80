"""Service mesh: AWS Load Balancer Controller, Istio base → CNI → istiod → ingress gateway, NLB, mTLS, shared Gateway."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.config import PlatformConfig
from infra.lib import helm, timing
from infra.lib.conventions import GATEWAY_NAMESPACE, ISTIO_NAMESPACE, ROUTES_LABEL
from infra.lib.metrics import VLLM_SERIES
from infra.lib.iam import POD_IDENTITY_TRUST, pod_identity, policy_document, role_with_policies
from infra.lib.interfaces import GatewayInfo
from infra.lib.monitoring import ScrapeTarget
from infra.lib.upstream import crd_files

ISTIO_REPOSITORY = "https://istio-release.storage.googleapis.com/charts"
ISTIO_HUB = "docker.io/istio"
EKS_CHARTS_REPOSITORY = "https://aws.github.io/eks-charts"
GATEWAY_NAME = "ml-gateway"
GATEWAY_SERVICE = "istio-ingressgateway"  # the gateway chart's Service, named after its release
GATEWAY_SELECTOR = {"istio": "ingressgateway"}
GATEWAY_ROLE_TAG = {"ml-platform.io/role": "gateway-lb"}
LBC_SERVICE_ACCOUNT = "aws-load-balancer-controller"
# The sidecar agent's status port: with metrics merging the injector points each pod's prometheus.io/port here, and
# the agent serves Envoy's stats (its 15090), its own and the app's in one response.
MERGED_METRICS_PORT = 15020


def load_balancer_controller_policy(cluster_name: str) -> str:
    """The controller's published policy for the pinned version (schemas/iam, checked statement by statement):
    reads everywhere; writes only on what carries its cluster tag."""
    tagged_request = {"Null": {"aws:RequestTag/elbv2.k8s.aws/cluster": "false"}}
    tagged_resource = {"Null": {"aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}}
    elb = "arn:aws:elasticloadbalancing:*:*"
    return policy_document(
        [
            {
                "Effect": "Allow",
                "Action": "iam:CreateServiceLinkedRole",
                "Resource": "*",
                "Condition": {"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}},
            },
            {
                "Effect": "Allow",
                "Action": [
                    "ec2:DescribeAccountAttributes", "ec2:DescribeAddresses", "ec2:DescribeAvailabilityZones",
                    "ec2:DescribeInternetGateways", "ec2:DescribeVpcs", "ec2:DescribeVpcPeeringConnections",
                    "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeInstances",
                    "ec2:DescribeNetworkInterfaces", "ec2:DescribeTags", "ec2:GetCoipPoolUsage", "ec2:DescribeCoipPools",
                    "ec2:GetSecurityGroupsForVpc", "ec2:DescribeIpamPools", "ec2:DescribeRouteTables",
                    "elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeLoadBalancerAttributes",
                    "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeListenerCertificates",
                    "elasticloadbalancing:DescribeSSLPolicies", "elasticloadbalancing:DescribeRules",
                    "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetGroupAttributes",
                    "elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DescribeTags",
                    "elasticloadbalancing:DescribeTrustStores", "elasticloadbalancing:DescribeListenerAttributes",
                    "elasticloadbalancing:DescribeCapacityReservation",
                ],
                "Resource": "*",
            },
            {
                "Effect": "Allow",
                "Action": [
                    "acm:ListCertificates", "acm:DescribeCertificate", "iam:ListServerCertificates", "iam:GetServerCertificate",
                    "waf-regional:GetWebACL", "waf-regional:GetWebACLForResource", "waf-regional:AssociateWebACL",
                    "waf-regional:DisassociateWebACL",
                    "wafv2:GetWebACL", "wafv2:GetWebACLForResource", "wafv2:AssociateWebACL", "wafv2:DisassociateWebACL",
                    "shield:GetSubscriptionState", "shield:DescribeProtection", "shield:CreateProtection", "shield:DeleteProtection",
                    "cognito-idp:DescribeUserPoolClient",
                ],
                "Resource": "*",
            },
            {"Effect": "Allow", "Action": ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"], "Resource": "*"},
            {"Effect": "Allow", "Action": "ec2:CreateSecurityGroup", "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": "arn:aws:ec2:*:*:security-group/*",
                "Condition": {"StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"}, **tagged_request},
            },
            {
                "Effect": "Allow",
                "Action": ["ec2:CreateTags", "ec2:DeleteTags"],
                "Resource": "arn:aws:ec2:*:*:security-group/*",
                "Condition": {"Null": {"aws:RequestTag/elbv2.k8s.aws/cluster": "true", "aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}},
            },
            {
                "Effect": "Allow",
                "Action": ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:DeleteSecurityGroup"],
                "Resource": "*",
                "Condition": tagged_resource,
            },
            {
                "Effect": "Allow",
                "Action": ["elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup"],
                "Resource": "*",
                "Condition": tagged_request,
            },
            {
                "Effect": "Allow",
                "Action": [
                    "elasticloadbalancing:CreateListener", "elasticloadbalancing:DeleteListener",
                    "elasticloadbalancing:CreateRule", "elasticloadbalancing:DeleteRule",
                ],
                "Resource": "*",
            },
            {
                "Effect": "Allow",
                "Action": ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
                "Resource": [f"{elb}:targetgroup/*/*", f"{elb}:loadbalancer/net/*/*", f"{elb}:loadbalancer/app/*/*"],
                "Condition": {"Null": {"aws:RequestTag/elbv2.k8s.aws/cluster": "true", "aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}},
            },
            {
                "Effect": "Allow",
                "Action": ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
                "Resource": [f"{elb}:listener/net/*/*/*", f"{elb}:listener/app/*/*/*", f"{elb}:listener-rule/net/*/*/*", f"{elb}:listener-rule/app/*/*/*"],
            },
            {
                "Effect": "Allow",
                "Action": [
                    "elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:SetIpAddressType",
                    "elasticloadbalancing:SetSecurityGroups", "elasticloadbalancing:SetSubnets",
                    "elasticloadbalancing:DeleteLoadBalancer", "elasticloadbalancing:ModifyTargetGroup",
                    "elasticloadbalancing:ModifyTargetGroupAttributes", "elasticloadbalancing:DeleteTargetGroup",
                    "elasticloadbalancing:ModifyListenerAttributes", "elasticloadbalancing:ModifyCapacityReservation",
                    "elasticloadbalancing:ModifyIpPools",
                ],
                "Resource": "*",
                "Condition": tagged_resource,
            },
            {
                "Effect": "Allow",
                "Action": "elasticloadbalancing:AddTags",
                "Resource": [f"{elb}:targetgroup/*/*", f"{elb}:loadbalancer/net/*/*", f"{elb}:loadbalancer/app/*/*"],
                "Condition": {
                    "StringEquals": {"elasticloadbalancing:CreateAction": ["CreateTargetGroup", "CreateLoadBalancer"]},
                    **tagged_request,
                },
            },
            {
                "Effect": "Allow",
                "Action": ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
                "Resource": f"{elb}:targetgroup/*/*",
            },
            {
                "Effect": "Allow",
                "Action": [
                    "elasticloadbalancing:SetWebAcl", "elasticloadbalancing:ModifyListener",
                    "elasticloadbalancing:AddListenerCertificates", "elasticloadbalancing:RemoveListenerCertificates",
                    "elasticloadbalancing:ModifyRule", "elasticloadbalancing:SetRulePriorities",
                ],
                "Resource": "*",
            },
        ]
    )


def listener_port(cfg: PlatformConfig) -> int:
    return 443 if cfg.mesh.gateway.certificate_arn else 80


def gateway_service_annotations(cfg: PlatformConfig, security_group_id: str) -> dict[str, str]:
    gw = cfg.mesh.gateway
    annotations = {
        "service.beta.kubernetes.io/aws-load-balancer-scheme": gw.scheme,
        "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
        "service.beta.kubernetes.io/aws-load-balancer-security-groups": security_group_id,
        "service.beta.kubernetes.io/aws-load-balancer-manage-backend-security-group-rules": "true",
        "service.beta.kubernetes.io/aws-load-balancer-attributes": "load_balancing.cross_zone.enabled=true",
        "service.beta.kubernetes.io/aws-load-balancer-healthcheck-port": "15021",
        "service.beta.kubernetes.io/aws-load-balancer-healthcheck-path": "/healthz/ready",
        "service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol": "HTTP",
        "service.beta.kubernetes.io/aws-load-balancer-additional-resource-tags": ",".join(
            f"{k}={v}" for k, v in sorted(cfg.tags_for(f"{cfg.cluster_name}-gateway").items()) if k != "Name"
        ),
    }
    if gw.certificate_arn:
        annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-cert"] = gw.certificate_arn
        annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-ports"] = "443"
        annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-negotiation-policy"] = "ELBSecurityPolicy-TLS13-1-2-2021-06"
    return annotations


def gateway_spec(hosts: list[str]) -> dict:
    """One HTTP listener per accepted host (none named for "*"), open to routes from the namespaces labelled for it
    only (the teams' and the platform UIs')."""
    allowed = {"namespaces": {"from": "Selector", "selector": {"matchExpressions": [{"key": ROUTES_LABEL, "operator": "Exists"}]}}}
    listeners = [
        {"name": f"http-{i}" if host != "*" else "http", "port": 80, "protocol": "HTTP", "allowedRoutes": allowed, **({"hostname": host} if host != "*" else {})}
        for i, host in enumerate(hosts)
    ]
    return {
        "gatewayClassName": "istio",
        "addresses": [{"type": "Hostname", "value": f"{GATEWAY_SERVICE}.{GATEWAY_NAMESPACE}.svc.cluster.local"}],
        "listeners": listeners,
    }


def merged_metrics_relabelings() -> list[dict[str, object]]:
    """One target per meshed pod: the sidecar's declared port (15090) is discovered, and the address moved to the
    merged port the injector wrote into prometheus.io/port. Pods that opted out of merging are not read here."""
    address = ["__meta_kubernetes_pod_annotation_prometheus_io_port", "__meta_kubernetes_pod_ip"]
    return [
        {"action": "keep", "sourceLabels": ["__meta_kubernetes_pod_container_name"], "regex": "istio-proxy"},
        {"action": "keep", "sourceLabels": ["__meta_kubernetes_pod_annotation_prometheus_io_port"], "regex": str(MERGED_METRICS_PORT)},
        {"action": "replace", "sourceLabels": address, "regex": r"(\d+);(([A-Fa-f0-9]{1,4}::?){1,7}[A-Fa-f0-9]{1,4})", "replacement": "[$2]:$1", "targetLabel": "__address__"},
        {"action": "replace", "sourceLabels": address, "regex": r"(\d+);((([0-9]+?)(\.|$)){4})", "replacement": "$2:$1", "targetLabel": "__address__"},
    ]


@dataclass(frozen=True)
class MeshArgs:
    config: PlatformConfig
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    cluster_name: pulumi.Output[str]
    provider: k8s.Provider
    system_node_selector: dict[str, str]
    system_toleration: dict[str, str]
    depends_on: list[pulumi.Resource]
    # The gateway's pods run on Karpenter's general-purpose pool.
    general_capacity: pulumi.Resource


class Mesh(pulumi.ComponentResource):
    istiod: k8s.helm.v3.Release
    gateway_api_crds: k8s.yaml.v2.ConfigGroup
    inference_pool_crds: k8s.yaml.v2.ConfigGroup
    gateway: k8s.apiextensions.CustomResource
    gateway_info: GatewayInfo
    gateway_name: str = f"{GATEWAY_NAMESPACE}/{GATEWAY_NAME}"
    gateway_hostname: pulumi.Output[str]
    gateway_scheme: str
    scrape_targets: list[ScrapeTarget]

    def __init__(self, name: str, args: MeshArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:mesh:Mesh", name, None, opts)
        cfg, mc = args.config, args.config.mesh
        cluster_name = cfg.cluster_name
        child = pulumi.ResourceOptions(parent=self)
        selector, toleration = args.system_node_selector, args.system_toleration
        k8s_opts = lambda *deps: pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[*args.depends_on, *deps])  # noqa: E731

        lbc = role_with_policies(
            f"{name}-lb-controller",
            trust=POD_IDENTITY_TRUST,
            policy=load_balancer_controller_policy(cluster_name),
            description=f"AWS Load Balancer Controller of {cluster_name}",
            tags=cfg.tags_for(f"{cluster_name}-lb-controller"),
            parent=self,
        )
        lbc_identity = pod_identity(
            f"{name}-lb-controller",
            cluster_name=args.cluster_name,
            namespace="kube-system",
            service_account=LBC_SERVICE_ACCOUNT,
            role=lbc.role,
            tags=cfg.tags_for(f"{cluster_name}-lb-controller"),
            parent=self,
        )
        lb_controller = helm.release(
            f"{name}-lb-controller",
            name="aws-load-balancer-controller",
            chart="aws-load-balancer-controller",
            repository=EKS_CHARTS_REPOSITORY,
            version=mc.load_balancer_controller_version,
            namespace="kube-system",
            values={
                "clusterName": args.cluster_name,
                "region": cfg.region,
                "vpcId": args.vpc_id,
                "replicaCount": 2,
                "serviceAccount": {"name": LBC_SERVICE_ACCOUNT},
                # Only Services that ask for it by loadBalancerClass get an NLB.
                "enableServiceMutatorWebhook": False,
                "nodeSelector": selector,
                "tolerations": [toleration],
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}},
            },
            opts=k8s_opts(*lbc.attachments, lbc_identity),
        )

        def istio(resource_name, release, chart, namespace, values, opts, timeout=None) -> k8s.helm.v3.Release:
            return helm.release(
                resource_name, name=release, chart=chart, repository=ISTIO_REPOSITORY, version=mc.istio_version,
                namespace=namespace, values=values, opts=opts, timeout=timeout,
            )

        # The published charts default to these (the release build writes them); the chart sources at the tag
        # point at a testing registry's `latest`, so the program pins them.
        istio_images = {"hub": ISTIO_HUB, "tag": mc.istio_version}

        # The Gateway API standard channel at the release Istio is built against; istiod starts with it present.
        # Applied from the vendored files by the provider: each CRD is still its own object, created and awaited alone,
        # and its schema never round-trips through the program.
        self.gateway_api_crds = k8s.yaml.v2.ConfigGroup(f"{name}-gateway-api-crds", files=crd_files("gateway-api"), opts=k8s_opts())
        # The Inference Extension's InferencePool at the release Istio 1.30 is built against: istiod watches it when
        # ENABLE_GATEWAY_API_INFERENCE_EXTENSION is on, and the LLM routes' backends are InferencePools.
        self.inference_pool_crds = k8s.yaml.v2.ConfigGroup(
            f"{name}-inference-pool-crds", files=crd_files("gateway-api-inference-extension"), opts=k8s_opts(),
        )
        # The Istio CNI DaemonSet edits pod networking on every node: privileged by nature.
        istio_system = self._namespace(f"{name}-istio-system", ISTIO_NAMESPACE, "privileged", args, injection=False, needs_nodes=False)
        # CRDs and webhook configurations only: they need the API server, not nodes, so they install while nodes join.
        base = istio(
            f"{name}-istio-base", "istio-base", "base", ISTIO_NAMESPACE, {"defaultRevision": "default"},
            pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[istio_system]),
        )
        # With the CNI plugin, injected pods need no NET_ADMIN init container and pass the restricted profile.
        cni = istio(
            f"{name}-istio-cni",
            "istio-cni",
            "cni",
            ISTIO_NAMESPACE,
            {"resources": helm.resources("100m", "128Mi"), "global": istio_images},
            k8s_opts(base),
        )
        self.istiod = istio(
            f"{name}-istiod",
            "istiod",
            "istiod",
            ISTIO_NAMESPACE,
            {
                "replicaCount": mc.istiod_replicas,
                "autoscaleMin": mc.istiod_replicas,
                "autoscaleMax": max(mc.istiod_replicas, 5),
                "resources": helm.resources("500m", "2Gi"),
                "nodeSelector": selector,
                "tolerations": [toleration],
                "topologySpreadConstraints": [
                    {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
                     "labelSelector": {"matchLabels": {"app": "istiod"}}}
                ],
                "meshConfig": {"accessLogFile": "/dev/stdout", "enablePrometheusMerge": True},
                "cni": {"enabled": True},
                # HTTPRoutes to InferencePools: the gateway asks the pool's endpoint picker (ext_proc) for each request.
                "env": {"ENABLE_GATEWAY_API_INFERENCE_EXTENSION": "true"},
                "global": {
                    # A PDB over a single replica would block every node drain.
                    "defaultPodDisruptionBudget": {"enabled": mc.istiod_replicas > 1},
                    # Every injected sidecar, the inference pods' included: no CPU limit on the request path.
                    "proxy": {"resources": helm.resources("100m", "128Mi")},
                    **istio_images,
                },
            },
            # The CNI agent matters to injected pods (the gateway's), not to istiod: the two install side by side.
            k8s_opts(base, self.gateway_api_crds, self.inference_pool_crds),
        )

        gateway_ns = self._namespace(f"{name}-istio-ingress", GATEWAY_NAMESPACE, "baseline", args, injection=True)
        gateway = istio(
            f"{name}-gateway",
            GATEWAY_SERVICE,
            "gateway",
            GATEWAY_NAMESPACE,
            {
                "labels": GATEWAY_SELECTOR,
                # The internet-facing Service is declared below, where its deletion is awaited.
                "service": {"type": "ClusterIP"},
                "autoscaling": {"enabled": True, "minReplicas": mc.gateway.min_replicas, "maxReplicas": mc.gateway.max_replicas},
                "podDisruptionBudget": {"maxUnavailable": 1},
                "resources": helm.resources("500m", "512Mi"),
                "topologySpreadConstraints": [
                    {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
                     "labelSelector": {"matchLabels": GATEWAY_SELECTOR}}
                ],
            },
            k8s_opts(self.istiod, cni, gateway_ns, args.general_capacity),
            # Its pods wait for Karpenter to launch a cpu node.
            timeout=timing.HELM_ON_NEW_NODES,
        )

        allowed = mc.gateway.allowed_cidrs or (["0.0.0.0/0"] if mc.gateway.scheme == "internet-facing" else [args.vpc_cidr])
        port = listener_port(cfg)
        lb_security_group = aws.ec2.SecurityGroup(
            f"{name}-gateway-lb",
            aws.ec2.SecurityGroupArgs(
                description=f"Listener of the {cluster_name} ingress gateway load balancer",
                vpc_id=args.vpc_id,
                ingress=[
                    aws.ec2.SecurityGroupIngressArgs(
                        description="gateway listener", protocol="tcp", from_port=port, to_port=port, cidr_blocks=allowed
                    )
                ],
                egress=[
                    aws.ec2.SecurityGroupEgressArgs(
                        description="to gateway pods in the VPC", protocol="tcp", from_port=0, to_port=65535, cidr_blocks=[args.vpc_cidr]
                    )
                ],
                tags={**cfg.tags_for(f"{cluster_name}-gateway-lb"), **GATEWAY_ROLE_TAG},
            ),
            opts=child,
        )
        # Pulumi waits for this Service to be gone, and the controller's finalizer deletes the NLB first:
        # destroy removes the load balancer before the controller, the cluster and the network.
        lb_service = k8s.core.v1.Service(
            f"{name}-gateway-nlb",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="istio-ingressgateway-nlb",
                namespace=GATEWAY_NAMESPACE,
                labels={"app.kubernetes.io/part-of": "ml-platform", **GATEWAY_SELECTOR},
                annotations=lb_security_group.id.apply(lambda sg: gateway_service_annotations(cfg, sg)),
            ),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="LoadBalancer",
                load_balancer_class="service.k8s.aws/nlb",
                selector=GATEWAY_SELECTOR,
                external_traffic_policy="Local",
                ports=[k8s.core.v1.ServicePortArgs(name="https" if port == 443 else "http", port=port, target_port=80, protocol="TCP")],
            ),
            opts=k8s_opts(lb_controller, gateway),
        )
        # Mesh-wide: every sidecar only accepts mutual TLS.
        k8s.apiextensions.CustomResource(
            f"{name}-mtls",
            api_version="security.istio.io/v1",
            kind="PeerAuthentication",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="default", namespace=ISTIO_NAMESPACE),
            spec={"mtls": {"mode": "STRICT"}},
            opts=k8s_opts(self.istiod),
        )
        # Gateway API with Istio as the implementation, bound to the gateway deployed above (Istio's manual
        # deployment): Istio creates no Service of its own, so the NLB stays the Pulumi-managed one.
        self.gateway = k8s.apiextensions.CustomResource(
            f"{name}-gateway-resource",
            api_version="gateway.networking.k8s.io/v1",
            kind="Gateway",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=GATEWAY_NAME, namespace=GATEWAY_NAMESPACE, labels={"app.kubernetes.io/part-of": "ml-platform"}),
            spec=gateway_spec(list(mc.gateway.hosts)),
            opts=k8s_opts(self.istiod, gateway, self.gateway_api_crds),
        )

        self.scrape_targets = [
            ScrapeTarget(
                "istiod",
                "ServiceMonitor",
                ISTIO_NAMESPACE,
                {"matchLabels": {"app": "istiod"}},
                {"port": "http-monitoring", "interval": "30s"},
                self.istiod,
            ),
            # Every meshed pod once, at its merged endpoint: Envoy's stats, the agent's and the app's (as Istio's
            # prometheus-operator sample does). Scraping Envoy's 15090 as well would count every request twice.
            ScrapeTarget(
                "envoy-sidecars",
                "PodMonitor",
                ISTIO_NAMESPACE,
                {"matchExpressions": [{"key": "security.istio.io/tlsMode", "operator": "Exists"}]},
                {
                    "path": "/stats/prometheus",
                    "interval": "30s",
                    "relabelings": merged_metrics_relabelings(),
                    # vLLM engines' series come through their own ServiceMonitor (components/llm_serving.py), once.
                    "metricRelabelings": [{"action": "drop", "sourceLabels": ["__name__"], "regex": VLLM_SERIES}],
                },
                self.istiod,
                any_namespace=True,
            ),
        ]
        self.gateway_scheme = mc.gateway.scheme
        self.gateway_hostname = lb_service.status.load_balancer.ingress[0].hostname
        self.gateway_info = GatewayInfo(
            parent_ref={"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
            hosts=list(mc.gateway.hosts),
            url=self.gateway_hostname.apply(lambda h: f"{'https' if port == 443 else 'http'}://{h}"),
            selector=dict(GATEWAY_SELECTOR),
            # The gateway chart's service account is its release's name: the workload identity of its proxies.
            principal=f"cluster.local/ns/{GATEWAY_NAMESPACE}/sa/{GATEWAY_SERVICE}",
        )
        self.register_outputs({"gatewayHostname": self.gateway_hostname})

    def _namespace(
        self, resource_name: str, ns: str, pod_security: str, args: MeshArgs, injection: bool, needs_nodes: bool = True
    ) -> k8s.core.v1.Namespace:
        labels = {"pod-security.kubernetes.io/enforce": pod_security, "app.kubernetes.io/part-of": "ml-platform"}
        if injection:
            labels["istio-injection"] = "enabled"
        return k8s.core.v1.Namespace(
            resource_name,
            metadata=k8s.meta.v1.ObjectMetaArgs(name=ns, labels=labels),
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=args.depends_on if needs_nodes else []),
        )
