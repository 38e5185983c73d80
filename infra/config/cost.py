"""Cost settings: the budget the stack's worst case is held to."""
from __future__ import annotations

from typing import Annotated, Optional

from pydantic import Field

from infra.config.base import Model

class BudgetConfig(Model):
    """What the stack may cost at most: the policy pack holds its worst case to this, and an AWS Budget alerts on real spend."""

    # No default: like a pool's limits, the most an environment may spend is each stack's explicit choice.
    max_hourly_usd: Annotated[float, Field(gt=0)]
    # Spot-only pools priced at this fraction of on-demand; 1 assumes spot may cost as much (its upper bound).
    spot_price_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    # Price the ceiling with this region's table while the stack's own region has none in policies/prices;
    # every cost report says so. Without it, a region with no table is an error.
    price_table_region: Optional[Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")]] = None
    # Alerted when actual or forecast monthly spend passes the ceiling.
    notify_emails: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = []
