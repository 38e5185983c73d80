"""The cost guard: an AWS Budget at the stack's hourly ceiling, carrying the settings the policy pack's cost rule reads."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.config import PlatformConfig
from policies.rules.cost import HOURS_PER_MONTH, MAX_HOURLY_TAG, NODE_LOG_RATE_TAG, PRICE_REGION_TAG, PRICE_TABLE_TAG, SPOT_FRACTION_TAG


@dataclass(frozen=True)
class BudgetArgs:
    config: PlatformConfig


class Budget(pulumi.ComponentResource):
    def __init__(self, name: str, args: BudgetArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:budget:Budget", name, None, opts)
        cfg, budget = args.config, args.config.budget
        # Real spend against the same ceiling the worst case is held to, by email when addresses are set.
        notifications = [
            aws.budgets.BudgetNotificationArgs(
                comparison_operator="GREATER_THAN",
                threshold=100,
                threshold_type="PERCENTAGE",
                notification_type=kind,
                subscriber_email_addresses=list(budget.notify_emails),
            )
            for kind in ("ACTUAL", "FORECASTED")
        ] if budget.notify_emails else None
        aws.budgets.Budget(
            name,
            aws.budgets.BudgetArgs(
                name=f"{cfg.cluster_name}-ceiling",
                budget_type="COST",
                time_unit="MONTHLY",
                limit_amount=f"{budget.max_hourly_usd * HOURS_PER_MONTH:.2f}",
                limit_unit="USD",
                notifications=notifications,
                tags={
                    **cfg.tags_for(f"{cfg.cluster_name}-ceiling"),
                    MAX_HOURLY_TAG: f"{budget.max_hourly_usd:g}",
                    SPOT_FRACTION_TAG: f"{budget.spot_price_fraction:g}",
                    NODE_LOG_RATE_TAG: str(cfg.logging.node_log_rate_kib_per_second),
                    PRICE_REGION_TAG: cfg.region,
                    **({PRICE_TABLE_TAG: budget.price_table_region} if budget.price_table_region else {}),
                },
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})
