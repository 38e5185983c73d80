"""Centralized logs: Fluent Bit on every node ships container logs to CloudWatch Logs (a KMS-encrypted group per
team namespace and one for the platform) and, when enabled, to an OpenSearch Service domain inside the VPC.

Fluent Bit buffers on the node's disk and retries each chunk for at least `logging.outageToleranceMinutes`, so a
sink outage that long loses nothing, while a chunk a sink keeps refusing is given up on instead of retried forever;
an alert fires while records are retried or dropped. In OpenSearch, each app's parsed JSON sits under one key of
daily indices that a template maps and a retention policy deletes (infra/lib/opensearch_security.py sets both up).
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.lib import helm, opensearch_security, timing
from infra.config import LoggingConfig, PlatformConfig
from infra.lib.iam import POD_IDENTITY_TRUST, pod_identity, policy_document, role_with_policies
from infra.lib.kms import encryption_key, via_service
from infra.lib.monitoring import alert_rule

NAMESPACE = "logging"
SERVICE_ACCOUNT = "fluent-bit"
SECURITY_SERVICE_ACCOUNT = "opensearch-security"
CHART_REPOSITORY = "https://fluent.github.io/helm-charts"
PLATFORM_LABELS = {"app.kubernetes.io/part-of": "ml-platform"}
# Node paths: container logs (read-only) and Fluent Bit's own state (tail offsets and the disk buffer).
STATE_DIR = "/var/fluent-bit/state"
BUFFER_DIR = f"{STATE_DIR}/buffer"
INDEX_PREFIX = "ml-platform"
HTTPS_PORT = 443
# Fluent Bit waits at least SCHEDULER_BASE + 1 seconds before each retry of a chunk, and at most SCHEDULER_CAP + 1
# (its scheduler's capped exponential backoff with full jitter).
SCHEDULER_BASE = 10
SCHEDULER_CAP = 60
# The role-mapping Job's interpreter: the script needs only the standard library.
PYTHON_IMAGE = "public.ecr.aws/docker/library/python:3.13.9-slim"


def log_group_names(cluster_name: str, team_namespaces: Sequence[str]) -> dict[str, str]:
    """Log group per team namespace, plus `platform` for every other namespace and the kubelet."""
    groups = {"platform": f"/ml-platform/{cluster_name}/platform"}
    groups.update({ns: f"/ml-platform/{cluster_name}/teams/{ns}" for ns in team_namespaces})
    return groups


def retry_limit(lc: LoggingConfig) -> int:
    """Retries of one chunk that, at the shortest wait, still span the outage tolerance."""
    return math.ceil(lc.outage_tolerance_minutes * 60 / (SCHEDULER_BASE + 1))


def _section(kind: str, entries: dict[str, Any]) -> str:
    width = max(len(k) for k in entries)
    return f"[{kind}]\n" + "".join(f"    {k:<{width}} {v}\n" for k, v in entries.items())


def fluent_bit_config(lc: LoggingConfig, region: str, groups: dict[str, str], search_host: Optional[str]) -> dict[str, str]:
    """The chart's `config` sections. Team records are re-tagged `team.<namespace>` so each output matches one group."""
    buffered = {"storage.type": "filesystem"}
    service = _section("SERVICE", {
        "Daemon": "Off",
        "Flush": "{{ .Values.flush }}",
        "Log_Level": "{{ .Values.logLevel }}",
        "Parsers_File": "/fluent-bit/etc/parsers.conf",
        "HTTP_Server": "On",
        "HTTP_Listen": "0.0.0.0",
        "HTTP_Port": "{{ .Values.metricsPort }}",
        "Health_Check": "On",
        "storage.path": BUFFER_DIR,
        "storage.sync": "normal",
        "storage.checksum": "Off",
        "storage.backlog.mem_limit": "16M",
        "storage.metrics": "On",
        "scheduler.base": str(SCHEDULER_BASE),
        "scheduler.cap": str(SCHEDULER_CAP),
    })
    inputs = "\n".join([
        _section("INPUT", {
            "Name": "tail",
            "Path": "/var/log/containers/*.log",
            "multiline.parser": "cri",
            "Tag": "kube.*",
            "DB": f"{STATE_DIR}/tail-containers.db",
            "Skip_Long_Lines": "On",
            "Refresh_Interval": "10",
            **buffered,
        }),
        _section("INPUT", {
            "Name": "systemd",
            "Tag": "host.*",
            "Systemd_Filter": "_SYSTEMD_UNIT=kubelet.service",
            "DB": f"{STATE_DIR}/systemd.db",
            "Read_From_Tail": "On",
            **buffered,
        }),
    ])
    teams = sorted(ns for ns in groups if ns != "platform")
    filters = [
        _section("FILTER", {
            "Name": "kubernetes",
            "Match": "kube.*",
            "Merge_Log": "On",
            # The app's JSON under one key: apps' fields never collide with each other's or the record's own.
            "Merge_Log_Key": opensearch_security.APP_KEY,
            "Keep_Log": "Off",
            "K8S-Logging.Parser": "On",
            "K8S-Logging.Exclude": "On",
            "Annotations": "Off",
        })
    ]
    if teams:
        filters.append(_section("FILTER", {
            "Name": "rewrite_tag",
            "Match": "kube.*",
            "Rule": f"$kubernetes['namespace_name'] ^({'|'.join(teams)})$ team.$kubernetes['namespace_name'] false",
            "Emitter_Name": "team_emitter",
            "Emitter_Storage.type": "filesystem",
            "Emitter_Mem_Buf_Limit": "16M",
        }))
    # Retried for at least the outage tolerance (the disk buffer holds that long), then given up on: a chunk a sink
    # refuses for good (OpenSearch retries a whole bulk chunk for one rejected record) does not retry forever.
    reliable = {"Retry_Limit": str(retry_limit(lc)), "storage.total_limit_size": f"{lc.buffer_mib}M"}
    cloudwatch = {
        "Name": "cloudwatch_logs",
        "region": region,
        "log_stream_prefix": "node-",
        "log_stream_template": "$kubernetes['pod_name'].$kubernetes['container_name']",
        "auto_create_group": "Off",
    }
    outputs = [_section("OUTPUT", {**cloudwatch, "Match": f"team.{ns}", "log_group_name": groups[ns], **reliable}) for ns in teams]
    outputs.append(_section("OUTPUT", {**cloudwatch, "Match_Regex": r"^(kube|host)\..*", "log_group_name": groups["platform"], **reliable}))
    if search_host is not None:
        outputs.append(_section("OUTPUT", {
            "Name": "opensearch",
            "Match": "*",
            "Host": search_host,
            "Port": str(HTTPS_PORT),
            "tls": "On",
            "tls.verify": "On",
            "AWS_Auth": "On",
            "AWS_Region": region,
            "Logstash_Format": "On",
            "Logstash_Prefix": INDEX_PREFIX,
            "Suppress_Type_Name": "On",
            "Replace_Dots": "On",
            "Trace_Error": "On",
            **reliable,
        }))
    return {"service": service, "inputs": inputs, "filters": "\n".join(filters), "outputs": "\n".join(outputs)}


def fluent_bit_values(lc: LoggingConfig, region: str, groups: dict[str, str], search_host: Optional[str]) -> dict[str, Any]:
    return {
        "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
        "testFramework": {"enabled": False},
        # Reads node log files owned by root: root user, but no capabilities, no privilege escalation, read-only image.
        "podSecurityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": helm.resources("100m", "256Mi", chart_limits_cpu=False),
        # Every node ships its logs, accelerator and system nodes included.
        "tolerations": [{"operator": "Exists"}],
        "priorityClassName": "system-node-critical",
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
        "serviceMonitor": {"enabled": True},
        "dashboards": {"enabled": True},
        "config": fluent_bit_config(lc, region, groups, search_host),
        # The systemd input reads the node's journal only as local, which the node's machine-id identifies.
        "daemonSetVolumes": [
            {"name": "varlog", "hostPath": {"path": "/var/log"}},
            {"name": "etcmachineid", "hostPath": {"path": "/etc/machine-id", "type": "File"}},
            {"name": "state", "hostPath": {"path": STATE_DIR, "type": "DirectoryOrCreate"}},
        ],
        "daemonSetVolumeMounts": [
            {"name": "varlog", "mountPath": "/var/log", "readOnly": True},
            {"name": "etcmachineid", "mountPath": "/etc/machine-id", "readOnly": True},
            {"name": "state", "mountPath": STATE_DIR},
        ],
    }


def writer_policy(log_group_arns: Sequence[str], domain_arn: Optional[str]) -> str:
    statements = [
        {
            "Sid": "ShipToOwnLogGroups",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [f"{arn}:*" for arn in log_group_arns],
        }
    ]
    if domain_arn is not None:
        statements.append({"Sid": "IndexIntoSearchDomain", "Effect": "Allow", "Action": ["es:ESHttpPost", "es:ESHttpPut"], "Resource": f"{domain_arn}/*"})
    return policy_document(statements)


def domain_access_policy(domain_arn: str, principals: Sequence[str]) -> str:
    """Only these roles reach the domain's HTTP API at all; what they may do inside is fine-grained access control's."""
    return policy_document([
        {"Effect": "Allow", "Principal": {"AWS": sorted(principals)}, "Action": "es:ESHttp*", "Resource": f"{domain_arn}/*"}
    ])


def alert_rules(lc: LoggingConfig) -> dict[str, Any]:
    return {
        "groups": [
            {
                "name": "ml-platform.logging",
                "rules": [
                    alert_rule(
                        "LogRecordsDropped",
                        # Records given up on: dropped, or whose retries ran out (Fluent Bit's output metrics).
                        "sum by (pod, name) (rate(fluentbit_output_dropped_records_total[5m])) > 0 or "
                        "sum by (pod, name) (rate(fluentbit_output_retries_failed_total[5m])) > 0",
                        "5m",
                        "critical",
                        "Fluent Bit {{ $labels.pod }} is losing log records at output {{ $labels.name }}",
                    ),
                    alert_rule(
                        "LogOutputRetrying",
                        "sum by (pod, name) (rate(fluentbit_output_retries_total[5m])) > 0",
                        "15m",
                        "warning",
                        f"Fluent Bit {{{{ $labels.pod }}}} has retried output {{{{ $labels.name }}}} for 15 minutes; "
                        f"its disk buffer holds about {lc.outage_tolerance_minutes} minutes",
                    ),
                ],
            }
        ]
    }


@dataclass(frozen=True)
class LoggingArgs:
    config: PlatformConfig
    provider: k8s.Provider
    cluster_name: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    private_subnet_ids: Sequence[pulumi.Input[str]]
    logs_key_arn: pulumi.Input[str]
    system_node_selector: dict[str, str]
    system_toleration: dict[str, str]
    # ServiceMonitor and PrometheusRule need the monitoring stack's CRDs.
    monitoring_release: pulumi.Resource
    depends_on: list[pulumi.Resource]


class Logging(pulumi.ComponentResource):
    log_groups: dict[str, pulumi.Output[str]]
    search_endpoint: Optional[pulumi.Output[str]]
    dashboards_url: Optional[pulumi.Output[str]]
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: LoggingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:logging:Logging", name, None, opts)
        cfg, lc = args.config, args.config.logging
        cluster_name = cfg.cluster_name
        child = pulumi.ResourceOptions(parent=self)
        k8s_opts = lambda *deps: pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[*args.depends_on, *deps])  # noqa: E731

        group_names = log_group_names(cluster_name, [t.name for t in cfg.teams])
        groups = {
            key: aws.cloudwatch.LogGroup(
                f"{name}-{key}",
                aws.cloudwatch.LogGroupArgs(
                    name=group_name, retention_in_days=lc.retention_days, kms_key_id=args.logs_key_arn, tags=cfg.tags_for(group_name)
                ),
                opts=child,
            )
            for key, group_name in group_names.items()
        }
        self.log_groups = {key: group.name for key, group in groups.items()}

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            # Fluent Bit mounts the node's log directory (hostPath), which only the privileged level admits.
            metadata=k8s.meta.v1.ObjectMetaArgs(name=NAMESPACE, labels={"pod-security.kubernetes.io/enforce": "privileged", **PLATFORM_LABELS}),
            opts=k8s_opts(),
        )

        domain, master = self._search_domain(name, args) if lc.open_search.enabled else (None, None)
        writer = role_with_policies(
            f"{name}-fluent-bit",
            trust=POD_IDENTITY_TRUST,
            policy=pulumi.Output.all(pulumi.Output.all(*[g.arn for g in groups.values()]), domain.arn if domain else None).apply(
                lambda v: writer_policy(v[0], v[1])
            ),
            description=f"Fluent Bit of {cluster_name}: ships container logs",
            tags=cfg.tags_for(f"{cluster_name}-fluent-bit"),
            parent=self,
        )
        identity = pod_identity(
            f"{name}-fluent-bit",
            cluster_name=args.cluster_name,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            role=writer.role,
            tags=cfg.tags_for(f"{cluster_name}-fluent-bit"),
            parent=self,
        )
        prerequisites: list[pulumi.Resource] = [namespace, identity, *writer.attachments, args.monitoring_release]
        search_host: Optional[pulumi.Output[str]] = None
        self.search_endpoint = self.dashboards_url = None
        if domain is not None:
            # Fluent Bit does not wait for the mappings: until they are in place the domain refuses its writes
            # (403), which it retries from its disk buffer, so the release installs as soon as the domain exists.
            self._role_mappings(name, args, domain, master, writer.role, namespace)
            search_host = domain.endpoint
            self.search_endpoint = domain.endpoint.apply(lambda e: f"https://{e}")
            self.dashboards_url = domain.dashboard_endpoint.apply(lambda e: f"https://{e}")

        values = pulumi.Output.from_input(search_host).apply(lambda host: fluent_bit_values(lc, cfg.region, group_names, host))
        self.release = helm.release(
            name,
            name="fluent-bit",
            chart="fluent-bit",
            repository=CHART_REPOSITORY,
            version=lc.fluent_bit_version,
            namespace=NAMESPACE,
            values=values,
            # A DaemonSet is ready when every node runs a pod, Karpenter's fresh nodes included.
            timeout=timing.HELM_ON_NEW_NODES,
            opts=k8s_opts(*prerequisites),
        )
        k8s.apiextensions.CustomResource(
            f"{name}-alerts",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="ml-platform-logging", namespace=NAMESPACE, labels=PLATFORM_LABELS),
            spec=alert_rules(lc),
            opts=k8s_opts(namespace, args.monitoring_release),
        )
        self.register_outputs({"logGroups": self.log_groups, "searchEndpoint": self.search_endpoint})

    def _search_domain(self, name: str, args: LoggingArgs) -> tuple[aws.opensearch.Domain, aws.iam.Role]:
        """The domain, and its master role (which the role-mapping Job assumes)."""
        cfg, search = args.config, args.config.logging.open_search
        domain_name = cfg.search_domain_name
        child = pulumi.ResourceOptions(parent=self)
        tags = cfg.tags_for(domain_name)
        key = encryption_key(
            f"{name}-search",
            alias=domain_name,
            description=f"OpenSearch encryption at rest for {domain_name}",
            tags=tags,
            parent=self,
            service_use=[via_service("es", cfg.region)],
        )
        security_group = aws.ec2.SecurityGroup(
            f"{name}-search",
            aws.ec2.SecurityGroupArgs(
                description=f"HTTPS to the {domain_name} OpenSearch domain from inside the VPC",
                vpc_id=args.vpc_id,
                ingress=[
                    aws.ec2.SecurityGroupIngressArgs(
                        description="HTTPS from the VPC (Fluent Bit, Dashboards users)",
                        protocol="tcp",
                        from_port=HTTPS_PORT,
                        to_port=HTTPS_PORT,
                        cidr_blocks=[cfg.network.cidr],
                    )
                ],
                egress=[],
                tags=tags,
            ),
            opts=child,
        )
        domain_deps: list[pulumi.Resource] = []
        if search.create_service_linked_role:
            domain_deps.append(
                aws.iam.ServiceLinkedRole(f"{name}-search", aws.iam.ServiceLinkedRoleArgs(aws_service_name="opensearchservice.amazonaws.com"), opts=child)
            )
        publishing = {}
        for log_type, suffix in (("ES_APPLICATION_LOGS", "application"), ("AUDIT_LOGS", "audit")):
            group_name = f"/aws/opensearch/{domain_name}/{suffix}"
            publishing[log_type] = aws.cloudwatch.LogGroup(
                f"{name}-search-{suffix}",
                aws.cloudwatch.LogGroupArgs(name=group_name, retention_in_days=cfg.logging.retention_days, kms_key_id=args.logs_key_arn, tags=cfg.tags_for(group_name)),
                opts=child,
            )
        publishing_policy = aws.cloudwatch.LogResourcePolicy(
            f"{name}-search",
            aws.cloudwatch.LogResourcePolicyArgs(
                policy_name=f"{domain_name}-publishing",
                policy_document=pulumi.Output.all(*[g.arn for g in publishing.values()]).apply(
                    lambda arns: policy_document([
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "es.amazonaws.com"},
                            "Action": ["logs:PutLogEvents", "logs:CreateLogStream"],
                            "Resource": [f"{a}:*" for a in arns],
                        }
                    ])
                ),
            ),
            opts=child,
        )
        master = role_with_policies(
            f"{name}-search-security",
            trust=POD_IDENTITY_TRUST,
            description=f"Master user of {domain_name}: maps IAM roles to OpenSearch roles",
            tags=cfg.tags_for(f"{domain_name}-security"),
            parent=self,
        )
        zone_awareness = search.zone_count > 1
        domain = aws.opensearch.Domain(
            f"{name}-search",
            aws.opensearch.DomainArgs(
                domain_name=domain_name,
                engine_version=search.engine_version,
                cluster_config=aws.opensearch.DomainClusterConfigArgs(
                    instance_type=search.instance_type,
                    instance_count=search.instance_count,
                    zone_awareness_enabled=zone_awareness,
                    zone_awareness_config=aws.opensearch.DomainClusterConfigZoneAwarenessConfigArgs(availability_zone_count=search.zone_count)
                    if zone_awareness
                    else None,
                    dedicated_master_enabled=search.dedicated_manager_type is not None,
                    dedicated_master_type=search.dedicated_manager_type,
                    dedicated_master_count=3 if search.dedicated_manager_type else None,
                ),
                ebs_options=aws.opensearch.DomainEbsOptionsArgs(ebs_enabled=True, volume_type="gp3", volume_size=search.volume_gib),
                # One subnet per zone the data nodes spread over.
                vpc_options=aws.opensearch.DomainVpcOptionsArgs(
                    subnet_ids=list(args.private_subnet_ids)[: search.zone_count], security_group_ids=[security_group.id]
                ),
                encrypt_at_rest=aws.opensearch.DomainEncryptAtRestArgs(enabled=True, kms_key_id=key.arn),
                node_to_node_encryption=aws.opensearch.DomainNodeToNodeEncryptionArgs(enabled=True),
                domain_endpoint_options=aws.opensearch.DomainDomainEndpointOptionsArgs(
                    enforce_https=True, tls_security_policy="Policy-Min-TLS-1-2-PFS-2023-10"
                ),
                advanced_security_options=aws.opensearch.DomainAdvancedSecurityOptionsArgs(
                    enabled=True,
                    internal_user_database_enabled=False,
                    master_user_options=aws.opensearch.DomainAdvancedSecurityOptionsMasterUserOptionsArgs(
                        master_user_arn=master.role.arn
                    ),
                ),
                log_publishing_options=[
                    aws.opensearch.DomainLogPublishingOptionArgs(log_type=log_type, cloudwatch_log_group_arn=group.arn, enabled=True)
                    for log_type, group in publishing.items()
                ],
                tags=tags,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[publishing_policy, *domain_deps]),
        )
        return domain, master.role

    def _role_mappings(
        self, name: str, args: LoggingArgs, domain: aws.opensearch.Domain, master: aws.iam.Role, writer: aws.iam.Role, namespace: k8s.core.v1.Namespace
    ) -> k8s.batch.v1.Job:
        """The domain admits Fluent Bit, the admin role and the mapping Job itself; the Job then maps them inside."""
        cfg, search = args.config, args.config.logging.open_search
        child = pulumi.ResourceOptions(parent=self)
        access = aws.opensearch.DomainPolicy(
            f"{name}-search",
            aws.opensearch.DomainPolicyArgs(
                domain_name=domain.domain_name,
                access_policies=pulumi.Output.all(domain.arn, writer.arn, master.arn).apply(
                    lambda v: domain_access_policy(v[0], [v[1], v[2], search.admin_role_arn])
                ),
            ),
            opts=child,
        )
        identity = pod_identity(
            f"{name}-search-security",
            cluster_name=args.cluster_name,
            namespace=NAMESPACE,
            service_account=SECURITY_SERVICE_ACCOUNT,
            role=master,
            tags=cfg.tags_for(f"{cfg.search_domain_name}-security"),
            parent=self,
        )
        k8s_opts = lambda *deps: pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[*args.depends_on, *deps])  # noqa: E731
        meta = lambda n: k8s.meta.v1.ObjectMetaArgs(name=n, namespace=NAMESPACE, labels=PLATFORM_LABELS)  # noqa: E731
        account = k8s.core.v1.ServiceAccount(f"{name}-search-security", metadata=meta(SECURITY_SERVICE_ACCOUNT), opts=k8s_opts(namespace))
        script = k8s.core.v1.ConfigMap(
            f"{name}-search-security",
            metadata=meta("opensearch-security"),
            data={"opensearch_security.py": inspect.getsource(opensearch_security)},
            opts=k8s_opts(namespace),
        )
        core = k8s.core.v1
        env = {
            "DOMAIN_URL": domain.endpoint.apply(lambda e: f"https://{e}"),
            "AWS_REGION": cfg.region,
            "WRITER_ROLE_ARN": writer.arn,
            "ADMIN_ROLE_ARNS": master.arn.apply(lambda arn: ",".join([arn, search.admin_role_arn])),
            "INDEX_PREFIX": INDEX_PREFIX,
            "RETENTION_DAYS": str(search.retention_days),
            # One copy of each shard elsewhere, when the domain has another data node to hold it.
            "REPLICAS": str(min(1, search.instance_count - 1)),
        }
        # A pull and a few calls, each retried while the new domain settles; the margin covers a slow registry.
        deadline = timing.IMAGE_PULL["cpu"] + opensearch_security.RETRY_SECONDS + timing.MARGIN
        return k8s.batch.v1.Job(
            f"{name}-search-security",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="opensearch-security",
                namespace=NAMESPACE,
                labels=PLATFORM_LABELS,
                # Runs on the system nodes, which exist: a pull and a few retries while the domain settles.
                annotations={"pulumi.com/timeoutSeconds": str(deadline)},
            ),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=3,
                active_deadline_seconds=deadline,
                # Removed a day after it finished; `pulumi up --refresh` then runs it again, and its PUTs converge.
                ttl_seconds_after_finished=86400,
                template=core.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=PLATFORM_LABELS, annotations={"karpenter.sh/do-not-disrupt": "true"}),
                    spec=core.PodSpecArgs(
                        service_account_name=SECURITY_SERVICE_ACCOUNT,
                        # Pod Identity mounts its own token; the script never calls the Kubernetes API.
                        automount_service_account_token=False,
                        restart_policy="Never",
                        node_selector=args.system_node_selector,
                        tolerations=[core.TolerationArgs(**args.system_toleration)],
                        security_context=core.PodSecurityContextArgs(
                            run_as_non_root=True, run_as_user=65534, run_as_group=65534, seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault")
                        ),
                        containers=[
                            core.ContainerArgs(
                                name="map-roles",
                                image=PYTHON_IMAGE,
                                command=["python", "/opt/opensearch-security/opensearch_security.py"],
                                env=[core.EnvVarArgs(name=k, value=v) for k, v in sorted(env.items())],
                                resources=core.ResourceRequirementsArgs(requests={"cpu": "50m", "memory": "64Mi"}, limits={"memory": "64Mi"}),
                                security_context=core.SecurityContextArgs(
                                    allow_privilege_escalation=False, read_only_root_filesystem=True, capabilities=core.CapabilitiesArgs(drop=["ALL"])
                                ),
                                volume_mounts=[core.VolumeMountArgs(name="script", mount_path="/opt/opensearch-security", read_only=True)],
                            )
                        ],
                        volumes=[core.VolumeArgs(name="script", config_map=core.ConfigMapVolumeSourceArgs(name="opensearch-security"))],
                    ),
                ),
            ),
            # The domain refuses the master role until its access policy is in place.
            opts=k8s_opts(account, script, identity, domain, access),
        )
