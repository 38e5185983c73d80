"""IAM policy documents as JSON strings, shared by every component."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pulumi
import pulumi_aws as aws


def policy_document(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def merged_policy(*documents: str) -> str:
    """One policy of the statements of several (a Pod Identity association names one role, with one policy of ours)."""
    statements = [st for d in documents for st in json.loads(d)["Statement"]]
    sids = [st["Sid"] for st in statements if "Sid" in st]
    assert len(sids) == len(set(sids)), f"statement ids repeat across the merged policies: {sids}"
    return policy_document(statements)


def service_trust_policy(service: str, actions: tuple[str, ...] = ("sts:AssumeRole",)) -> str:
    return policy_document([{"Effect": "Allow", "Principal": {"Service": service}, "Action": list(actions)}])


# EKS Pod Identity assumes roles with session tags.
POD_IDENTITY_TRUST = service_trust_policy("pods.eks.amazonaws.com", ("sts:AssumeRole", "sts:TagSession"))


# What every node role needs: join the cluster, run the CNI, pull images, be reachable by SSM.
NODE_MANAGED_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly",
    "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
)


@dataclass(frozen=True)
class RoleWithPolicies:
    role: aws.iam.Role
    # Attachments finish after the role: whatever uses the permissions depends on these.
    attachments: list[pulumi.Resource]


def role_with_policies(
    name: str,
    *,
    trust: str,
    tags: dict[str, str],
    parent: pulumi.Resource,
    managed: Sequence[str] = (),
    policy: Optional[pulumi.Input[str]] = None,
    description: Optional[str] = None,
) -> RoleWithPolicies:
    """An IAM role with AWS-managed policies and, optionally, one customer-managed policy of its own."""
    role = aws.iam.Role(name, aws.iam.RoleArgs(assume_role_policy=trust, tags=tags), opts=pulumi.ResourceOptions(parent=parent))
    attachments: list[pulumi.Resource] = [
        aws.iam.RolePolicyAttachment(
            f"{name}-{arn.rsplit('/', 1)[1]}",
            aws.iam.RolePolicyAttachmentArgs(role=role.name, policy_arn=arn),
            opts=pulumi.ResourceOptions(parent=role),
        )
        for arn in managed
    ]
    if policy is not None:
        own = aws.iam.Policy(name, aws.iam.PolicyArgs(description=description, policy=policy, tags=tags), opts=pulumi.ResourceOptions(parent=parent))
        attachments.append(
            aws.iam.RolePolicyAttachment(name, aws.iam.RolePolicyAttachmentArgs(role=role.name, policy_arn=own.arn), opts=pulumi.ResourceOptions(parent=role))
        )
    return RoleWithPolicies(role, attachments)


def pod_identity(
    name: str, *, cluster_name: pulumi.Input[str], namespace: str, service_account: str, role: aws.iam.Role, tags: dict[str, str], parent: pulumi.Resource
) -> aws.eks.PodIdentityAssociation:
    """Pods of the service account get the role's credentials from the EKS Pod Identity agent."""
    return aws.eks.PodIdentityAssociation(
        name,
        aws.eks.PodIdentityAssociationArgs(cluster_name=cluster_name, namespace=namespace, service_account=service_account, role_arn=role.arn, tags=tags),
        opts=pulumi.ResourceOptions(parent=parent),
    )
