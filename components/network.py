"""Multi-AZ VPC: public and private subnets, NAT, S3 gateway and CloudWatch Logs interface endpoints, flow logs, closed default SG."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.config import PlatformConfig, plan_subnets
from infra.lib.iam import policy_document, role_with_policies, service_trust_policy


ECR_ENDPOINT_SERVICES = ("ecr.api", "ecr.dkr")


@dataclass(frozen=True)
class NetworkArgs:
    config: PlatformConfig
    availability_zones: list[str]
    logs_key_arn: pulumi.Input[str]


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: list[pulumi.Output[str]]
    public_subnet_ids: list[pulumi.Output[str]]
    availability_zones: list[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:network:Network", name, None, opts)
        cfg, net = args.config, args.config.network
        cluster_name = cfg.cluster_name
        child = pulumi.ResourceOptions(parent=self)
        private_cidrs, public_cidrs = plan_subnets(net)

        vpc = aws.ec2.Vpc(
            name,
            aws.ec2.VpcArgs(cidr_block=net.cidr, enable_dns_hostnames=True, enable_dns_support=True, tags=cfg.tags_for(name)),
            opts=child,
        )
        # No rules at all: nothing may fall back on the default group.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            aws.ec2.DefaultSecurityGroupArgs(vpc_id=vpc.id, ingress=[], egress=[], tags=cfg.tags_for(f"{name}-default-closed")),
            opts=child,
        )
        igw = aws.ec2.InternetGateway(
            f"{name}-igw", aws.ec2.InternetGatewayArgs(vpc_id=vpc.id, tags=cfg.tags_for(f"{name}-igw")), opts=child
        )

        public_rt = aws.ec2.RouteTable(
            f"{name}-public",
            aws.ec2.RouteTableArgs(
                vpc_id=vpc.id,
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
                tags=cfg.tags_for(f"{name}-public"),
            ),
            opts=child,
        )

        public_subnets, private_subnets, nats = [], [], []
        for i, az in enumerate(args.availability_zones):
            pub = aws.ec2.Subnet(
                f"{name}-public-{az}",
                aws.ec2.SubnetArgs(
                    vpc_id=vpc.id,
                    cidr_block=public_cidrs[i],
                    availability_zone=az,
                    map_public_ip_on_launch=False,
                    tags={**cfg.tags_for(f"{name}-public-{az}"), "kubernetes.io/role/elb": "1", "tier": "public"},
                ),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{az}",
                aws.ec2.RouteTableAssociationArgs(subnet_id=pub.id, route_table_id=public_rt.id),
                opts=child,
            )
            public_subnets.append(pub)
            if net.nat_gateways == "perAz" or i == 0:
                eip = aws.ec2.Eip(
                    f"{name}-nat-{az}", aws.ec2.EipArgs(domain="vpc", tags=cfg.tags_for(f"{name}-nat-{az}")), opts=child
                )
                nats.append(
                    aws.ec2.NatGateway(
                        f"{name}-nat-{az}",
                        aws.ec2.NatGatewayArgs(
                            allocation_id=eip.id, subnet_id=pub.id, tags=cfg.tags_for(f"{name}-nat-{az}")
                        ),
                        opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                    )
                )

        private_route_tables = []
        for i, az in enumerate(args.availability_zones):
            priv = aws.ec2.Subnet(
                f"{name}-private-{az}",
                aws.ec2.SubnetArgs(
                    vpc_id=vpc.id,
                    cidr_block=private_cidrs[i],
                    availability_zone=az,
                    tags={
                        **cfg.tags_for(f"{name}-private-{az}"),
                        "kubernetes.io/role/internal-elb": "1",
                        "karpenter.sh/discovery": cluster_name,
                        "tier": "private",
                    },
                ),
                opts=child,
            )
            nat = nats[i] if net.nat_gateways == "perAz" else nats[0]
            rt = aws.ec2.RouteTable(
                f"{name}-private-{az}",
                aws.ec2.RouteTableArgs(
                    vpc_id=vpc.id,
                    routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id)],
                    tags=cfg.tags_for(f"{name}-private-{az}"),
                ),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{az}",
                aws.ec2.RouteTableAssociationArgs(subnet_id=priv.id, route_table_id=rt.id),
                opts=child,
            )
            private_subnets.append(priv)
            private_route_tables.append(rt)

        # Image layers and model artifacts from S3 stay off the NAT gateways.
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            aws.ec2.VpcEndpointArgs(
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{cfg.region}.s3",
                vpc_endpoint_type="Gateway",
                route_table_ids=[rt.id for rt in private_route_tables],
                tags=cfg.tags_for(f"{name}-s3"),
            ),
            opts=child,
        )

        # Node and platform logs reach CloudWatch Logs through an interface endpoint in every private subnet: its
        # private DNS name answers for logs.<region>.amazonaws.com, so the bytes stop crossing (and paying for) the NAT.
        logs_endpoint_sg = aws.ec2.SecurityGroup(
            f"{name}-logs-endpoint",
            aws.ec2.SecurityGroupArgs(
                description="HTTPS to the CloudWatch Logs interface endpoint from inside the VPC",
                vpc_id=vpc.id,
                ingress=[
                    aws.ec2.SecurityGroupIngressArgs(
                        description="HTTPS from the VPC (log shippers)", protocol="tcp", from_port=443, to_port=443, cidr_blocks=[net.cidr]
                    )
                ],
                egress=[],
                tags=cfg.tags_for(f"{name}-logs-endpoint"),
            ),
            opts=child,
        )
        aws.ec2.VpcEndpoint(
            f"{name}-logs",
            aws.ec2.VpcEndpointArgs(
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{cfg.region}.logs",
                vpc_endpoint_type="Interface",
                subnet_ids=[s.id for s in private_subnets],
                security_group_ids=[logs_endpoint_sg.id],
                private_dns_enabled=True,
                tags=cfg.tags_for(f"{name}-logs"),
            ),
            opts=child,
        )

        if net.ecr_endpoints:
            self._ecr_endpoints(name, cfg, vpc, private_subnets)

        if net.flow_logs.enabled:
            self._flow_logs(name, cfg, vpc, args.logs_key_arn)

        self.vpc_id = vpc.id
        self.private_subnet_ids = [s.id for s in private_subnets]
        self.public_subnet_ids = [s.id for s in public_subnets]
        self.availability_zones = list(args.availability_zones)
        self.register_outputs(
            {"vpcId": self.vpc_id, "privateSubnetIds": self.private_subnet_ids, "publicSubnetIds": self.public_subnet_ids}
        )

    def _ecr_endpoints(self, name: str, cfg: PlatformConfig, vpc: aws.ec2.Vpc, private_subnets: list[aws.ec2.Subnet]) -> None:
        """ECR needs both: `ecr.api` for the token and manifests' metadata, `ecr.dkr` for the registry protocol; the
        layers themselves come from S3, through the gateway endpoint above (Amazon ECR interface VPC endpoints)."""
        child = pulumi.ResourceOptions(parent=self)
        group = aws.ec2.SecurityGroup(
            f"{name}-ecr-endpoint",
            aws.ec2.SecurityGroupArgs(
                description="HTTPS to the ECR interface endpoints from inside the VPC",
                vpc_id=vpc.id,
                ingress=[
                    aws.ec2.SecurityGroupIngressArgs(
                        description="HTTPS from the VPC (image pulls)", protocol="tcp", from_port=443, to_port=443, cidr_blocks=[cfg.network.cidr]
                    )
                ],
                egress=[],
                tags=cfg.tags_for(f"{name}-ecr-endpoint"),
            ),
            opts=child,
        )
        for service in ECR_ENDPOINT_SERVICES:
            aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}",
                aws.ec2.VpcEndpointArgs(
                    vpc_id=vpc.id,
                    service_name=f"com.amazonaws.{cfg.region}.{service}",
                    vpc_endpoint_type="Interface",
                    subnet_ids=[s.id for s in private_subnets],
                    security_group_ids=[group.id],
                    private_dns_enabled=True,
                    tags=cfg.tags_for(f"{name}-{service.replace('.', '-')}"),
                ),
                opts=child,
            )

    def _flow_logs(self, name: str, cfg: PlatformConfig, vpc: aws.ec2.Vpc, logs_key_arn: pulumi.Input[str]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            aws.cloudwatch.LogGroupArgs(
                name=f"/ml-platform/{cfg.cluster_name}/vpc-flow-logs",
                retention_in_days=cfg.network.flow_logs.retention_days,
                kms_key_id=logs_key_arn,
                tags=cfg.tags_for(f"{name}-flow-logs"),
            ),
            opts=child,
        )
        # Its own role, allowed to write to this log group only.
        role = role_with_policies(
            f"{name}-flow-logs",
            trust=service_trust_policy("vpc-flow-logs.amazonaws.com"),
            policy=log_group.arn.apply(
                lambda arn: policy_document(
                    [
                        {
                            "Effect": "Allow",
                            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                            "Resource": f"{arn}:*",
                        }
                    ]
                )
            ),
            description=f"VPC flow logs of {cfg.cluster_name}",
            tags=cfg.tags_for(f"{name}-flow-logs"),
            parent=self,
        )
        aws.ec2.FlowLog(
            f"{name}-flow-logs",
            aws.ec2.FlowLogArgs(
                vpc_id=vpc.id,
                traffic_type="ALL",
                log_destination_type="cloud-watch-logs",
                log_destination=log_group.arn,
                iam_role_arn=role.role.arn,
                max_aggregation_interval=60,
                tags=cfg.tags_for(f"{name}-flow-logs"),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=role.attachments),
        )
