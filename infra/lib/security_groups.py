"""A managed service's security group that admits the cluster's nodes on one port and nothing else."""
from __future__ import annotations

import pulumi
import pulumi_aws as aws


def nodes_only(
    prefix: str, members: str, *, description: str, vpc_id: pulumi.Input[str], node_security_group_id: pulumi.Input[str], port: int, rule_description: str,
    tags: dict[str, str], rule_tags: dict[str, str], parent: pulumi.Resource,
) -> aws.ec2.SecurityGroup:
    """The group (no egress) and a separate ingress rule naming the nodes' group: with no inline rule naming the EKS
    security group, the service's long creation runs beside the control plane's instead of after it."""
    child = pulumi.ResourceOptions(parent=parent)
    group = aws.ec2.SecurityGroup(f"{prefix}-{members}", aws.ec2.SecurityGroupArgs(description=description, vpc_id=vpc_id, egress=[], tags=tags), opts=child)
    aws.vpc.SecurityGroupIngressRule(
        f"{prefix}-from-nodes",
        aws.vpc.SecurityGroupIngressRuleArgs(
            security_group_id=group.id, referenced_security_group_id=node_security_group_id, ip_protocol="tcp",
            from_port=port, to_port=port, description=rule_description, tags=rule_tags,
        ),
        opts=child,
    )
    return group
