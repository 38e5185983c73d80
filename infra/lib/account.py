"""The AWS account and partition the stack deploys into (looked up once)."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import pulumi_aws as aws


@dataclass(frozen=True)
class Account:
    partition: str
    account_id: str

    def root(self) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:root"


@functools.cache
def current() -> Account:
    return Account(aws.get_partition().partition, aws.get_caller_identity().account_id)
