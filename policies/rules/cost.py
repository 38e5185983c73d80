"""The most a stack can cost per hour, from its resources and a dated price table; the budget rule.

Node pools count at their limits: the ceiling of a pool is the most Karpenter could spend filling its CPU,
memory and accelerator limits with the instance types it allows, each node priced with what it brings along
(root volume, container-log ingestion, storage and transfer), so the fill maximises the whole bill (a
linear-programming bound, so never below any real fill). Memory counts net of Karpenter's VM overhead, as its
limits do. Fixed items are what exists whatever the pools' limits. Usage-priced items (traffic, EFS bytes, API
calls) are estimated only where the platform fixes the rate, and the report lists every assumption.
"""
from __future__ import annotations

import datetime
import itertools
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Optional

from .base import MANDATORY, dig, quantity, stack_rule
from .versions import EXTENDED, kubernetes_status

PRICES = Path(__file__).resolve().parent.parent / "prices"
HOURS_PER_MONTH = 730
BUDGET = "aws:budgets/budget:Budget"
# The Budget resource carries the stack's cost settings as tags, so the policy pack reads what the program set.
MAX_HOURLY_TAG = "ml-platform.io/max-hourly-usd"
SPOT_FRACTION_TAG = "ml-platform.io/spot-price-fraction"
NODE_LOG_RATE_TAG = "ml-platform.io/node-log-kib-per-second"
PRICE_REGION_TAG = "ml-platform.io/region"
# Set only when the stack chose to be priced with another region's table (budget.priceTableRegion).
PRICE_TABLE_TAG = "ml-platform.io/price-table-region"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
ACCELERATOR_FIELDS = {"nvidia.com/gpu": "nvidiaGpus", "aws.amazon.com/neuron": "neuronDevices"}
LIMIT_SETTINGS = {"cpu": "cpu", "memory": "memoryGib", **{k: "accelerators" for k in ACCELERATOR_FIELDS}}
# On a NodePool: the instances its capacity reservations hold, "g6e.xlarge=2,p5.48xlarge=1" (components/karpenter.py).
RESERVED_ANNOTATION = "ml-platform.io/reserved-instances"
# Karpenter subtracts this share of nominal memory from every instance type's capacity (vm-memory-overhead-percent,
# default 0.075 in pkg/operator/options/options.go of karpenter-provider-aws v1.14.1), and a pool's memory limit
# counts that capacity: net of it, more nodes fit under the same limit.
VM_MEMORY_OVERHEAD = 0.075


# Amazon MSK in us-east-1 (https://aws.amazon.com/msk/pricing/, as public pricing code quoted the page in 2025-2026):
# standard brokers per hour, broker storage per GB-month, Serverless per cluster-hour and partition-hour. Kept here,
# not in the region tables, until refresh.py reads the AmazonMSK offer file; other regions are priced alike.
MSK_PRICES = {
    "brokerHour": {"kafka.m7g.large": 0.204, "kafka.m7g.xlarge": 0.408, "kafka.m7g.2xlarge": 0.816, "kafka.m5.large": 0.21, "kafka.m5.xlarge": 0.42},
    "storageGbMonth": 0.10,
    "serverlessClusterHour": 0.75,
    "serverlessPartitionHour": 0.0015,
}
# Amazon S3 Standard in us-east-1, first 50 TB per month (https://aws.amazon.com/s3/pricing/). A bucket has no size
# limit: the model prices the storage its owner budgets for (the bucket's BUDGETED_GIB_TAG).
S3_PRICES = {"standardGbMonth": 0.023}
S3_BUCKET = "aws:s3/bucket:Bucket"
BUDGETED_GIB_TAG = "ml-platform.io/budgeted-gib"
# The setting that holds a bucket's budgeted size, when it is not the pipeline artifacts' (a team model store's).
BUDGETED_BY_TAG = "ml-platform.io/budgeted-by"
MSK_CLUSTER = "aws:msk/cluster:Cluster"
MSK_SERVERLESS = "aws:msk/serverlessCluster:ServerlessCluster"
MSK_TOPIC = "aws:msk/topic:Topic"
EKS_CAPABILITY = "aws:eks/capability:Capability"
STORAGE_TARGET = "aws:appautoscaling/target:Target"

# Aurora Serverless v2 (Aurora Standard) in us-east-1 (https://aws.amazon.com/rds/aurora/pricing/): per ACU-hour.
# Other regions are priced alike until refresh.py reads the AmazonRDS offer file.
AURORA_PRICES = {"acuHour": 0.12}
AURORA_CLUSTER = "aws:rds/cluster:Cluster"
AURORA_INSTANCE = "aws:rds/clusterInstance:ClusterInstance"


class PriceError(ValueError):
    """A pool allows an instance type the price table does not list."""


class MissingTable(PriceError):
    """The stack's region has no price table and the stack named no stand-in."""


@dataclass(frozen=True)
class PriceTable:
    region: str
    date: str
    instances: dict[str, dict[str, Any]]
    services: dict[str, Any]
    # Set when the stack's region has no table of its own and another region's stands in.
    substitute_for: Optional[str] = None


@lru_cache(maxsize=None)
def price_table(region: str, stand_in: Optional[str] = None) -> PriceTable:
    """The region's own table; another region's only when the stack named it (budget.priceTableRegion)."""
    path, substitute = PRICES / f"{region}.json", None
    if not path.exists() and stand_in and (PRICES / f"{stand_in}.json").exists():
        path, substitute = PRICES / f"{stand_in}.json", region
    if not path.exists():
        raise MissingTable(
            f"no price table for {region} in policies/prices: run policies/prices/refresh.py --region {region} "
            f"(with AWS credentials), or set budget.priceTableRegion to a region that has one"
        )
    doc = json.loads(path.read_text())
    return PriceTable(doc["region"], doc["date"], doc["instances"], doc["services"], substitute)


@dataclass
class Item:
    name: str
    hourly_usd: float
    detail: str
    kind: str  # "pool" or "fixed"
    mix: dict[str, float] = field(default_factory=dict)
    nodes: float = 0.0
    # The item's dollars by what drives them: the stack setting (dotted key) -> $/h.
    drivers: dict[str, float] = field(default_factory=dict)


@dataclass
class Ceiling:
    region: str
    prices_date: str
    items: list[Item]
    assumptions: list[str]

    @property
    def total(self) -> float:
        return sum(i.hourly_usd for i in self.items)

    @property
    def fixed(self) -> float:
        return sum(i.hourly_usd for i in self.items if i.kind == "fixed")

    def top_pool(self) -> Optional[Item]:
        pools = [i for i in self.items if i.kind == "pool"]
        return max(pools, key=lambda i: i.hourly_usd) if pools else None

    def dominant(self, kind: Optional[str] = None) -> tuple[str, float]:
        """The setting that drives the most dollars (of items of this kind), with its $/h."""
        totals: dict[str, float] = {}
        for i in self.items:
            if kind is None or i.kind == kind:
                for setting, usd in (i.drivers or {i.name: i.hourly_usd}).items():
                    totals[setting] = totals.get(setting, 0.0) + usd
        return max(totals.items(), key=lambda kv: kv[1]) if totals else ("", 0.0)

    def as_json(self, max_hourly_usd: Optional[float]) -> dict[str, Any]:
        return {
            "currency": "USD",
            "region": self.region,
            "pricesDate": self.prices_date,
            "totalHourlyUsd": round(self.total, 2),
            "fixedHourlyUsd": round(self.fixed, 2),
            "budgetHourlyUsd": max_hourly_usd,
            "pools": {
                i.name: {
                    "hourlyUsd": round(i.hourly_usd, 2),
                    "nodes": round(i.nodes, 1),
                    "fill": {t: round(n, 2) for t, n in i.mix.items()},
                    "drivers": {k: round(v, 2) for k, v in i.drivers.items()},
                    "detail": i.detail,
                }
                for i in self.items
                if i.kind == "pool"
            },
            "fixed": {i.name: {"hourlyUsd": round(i.hourly_usd, 4), "detail": i.detail} for i in self.items if i.kind == "fixed"},
            "dominant": dict(zip(("setting", "hourlyUsd"), (lambda d: (d[0], round(d[1], 2)))(self.dominant()))),
            "assumptions": self.assumptions,
        }


def _requirement(requirements: list[dict], key: str) -> Optional[dict]:
    return next((r for r in requirements if r.get("key") == key), None)


def allowed_types(pool: str, requirements: list[dict], table: PriceTable) -> list[str]:
    """The instance types a NodePool's requirements admit, as far as its price is concerned."""
    named = _requirement(requirements, "node.kubernetes.io/instance-type")
    if named:
        missing = [t for t in named["values"] if t not in table.instances]
        if missing:
            raise PriceError(
                f"node pool {pool!r} allows {', '.join(missing)}, which the {table.region} price table "
                f"(dated {table.date}) does not list; run policies/prices/refresh.py --region {table.region}"
            )
        return list(named["values"])
    arch = _requirement(requirements, "kubernetes.io/arch")
    category = _requirement(requirements, "karpenter.k8s.aws/instance-category")
    generation = _requirement(requirements, "karpenter.k8s.aws/instance-generation")
    return sorted(
        t
        for t, spec in table.instances.items()
        if (not arch or spec["arch"] in arch["values"])
        and (not category or spec["category"] in category["values"])
        and (not generation or spec["generation"] > int(generation["values"][0]))
    )


def _solve(matrix: list[list[float]], rhs: list[float]) -> Optional[list[float]]:
    """Gaussian elimination for the small square systems of the vertex enumeration."""
    n = len(rhs)
    a = [row[:] + [b] for row, b in zip(matrix, rhs)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) < 1e-12:
            return None
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(n):
            if r != col:
                f = a[r][col] / a[col][col]
                a[r] = [x - f * y for x, y in zip(a[r], a[col])]
    return [a[i][n] / a[i][i] for i in range(n)]


def max_fill(types: dict[str, tuple[float, list[float]]], limits: list[float]) -> tuple[float, dict[str, float]]:
    """Maximise sum(price * count) subject to sum(count * use) <= limit for every limited resource, counts >= 0.

    The optimum of this linear program sits on a vertex that mixes at most as many types as there are limits,
    and only types no other type beats on price per unit of every resource can be in it."""
    # Dollars per unit of each resource: a type beaten on every one by another never enters the optimum.
    per_unit = {t: tuple(price / u if u else math.inf for u in use) for t, (price, use) in types.items()}
    frontier: list[str] = []
    for t in sorted(types, key=lambda t: per_unit[t], reverse=True):
        if not any(all(a >= b for a, b in zip(per_unit[u], per_unit[t])) for u in frontier):
            frontier.append(t)
    best, best_mix = 0.0, {}
    k = len(limits)
    for size in range(1, k + 1):
        for chosen in itertools.combinations(frontier, size):
            for binding in itertools.combinations(range(k), size):
                counts = _solve([[types[t][1][r] for t in chosen] for r in binding], [limits[r] for r in binding])
                if counts is None or any(c < -1e-9 for c in counts):
                    continue
                if any(sum(c * types[t][1][r] for c, t in zip(counts, chosen)) > limits[r] * (1 + 1e-9) for r in range(k)):
                    continue
                value = sum(c * types[t][0] for c, t in zip(counts, chosen))
                if value > best:
                    best, best_mix = value, {t: c for t, c in zip(chosen, counts) if c > 1e-9}
    return best, best_mix


@dataclass(frozen=True)
class NodeCosts:
    """What every node brings along besides its instance price, $ per node-hour, by the setting that drives it."""

    root_volume: float = 0.0
    logs: float = 0.0

    def total(self) -> float:
        return self.root_volume + self.logs


def node_costs(root_gib: float, log_gib_per_hour: float, table: PriceTable, retention_days: float, logs_via_endpoint: bool) -> NodeCosts:
    """Root volume, and container logs: ingestion, storage at steady state (compressed) and transfer to CloudWatch."""
    svc = table.services
    transfer = svc["vpcInterfaceEndpointGib"] if logs_via_endpoint else svc["natGatewayGib"]
    stored = svc["cloudwatchLogsStorageCompression"] * 24 * retention_days * svc["cloudwatchLogsStoredGibMonth"] / HOURS_PER_MONTH
    return NodeCosts(
        root_volume=root_gib * svc["ebsGp3GibMonth"] / HOURS_PER_MONTH,
        logs=log_gib_per_hour * (svc["cloudwatchLogsIngestedGib"] + stored + transfer),
    )


def pool_item(name: str, spec: dict, per_node: NodeCosts, table: PriceTable, spot_fraction: float) -> Item:
    template = spec["template"]["spec"]
    requirements = template.get("requirements") or []
    capacity = _requirement(requirements, "karpenter.sh/capacity-type")
    spot_only = bool(capacity) and set(capacity["values"]) == {"spot"}
    factor = spot_fraction if spot_only else 1.0
    limits = spec.get("limits") or {}
    resources = [("cpu", "vcpu", quantity(limits["cpu"])), ("memory", "memoryGib", quantity(limits["memory"]))] if limits else []
    resources += [(k, ACCELERATOR_FIELDS[k], quantity(v)) for k, v in sorted(limits.items()) if k in ACCELERATOR_FIELDS]
    if not resources:
        return Item(name, math.inf, "no limits: Karpenter may buy without bound", "pool")
    types = {}
    for t in allowed_types(name, requirements, table):
        s = table.instances[t]
        use = [float(s.get(f, 0)) * (1 - VM_MEMORY_OVERHEAD if key == "memory" else 1) for key, f, _ in resources]
        types[t] = (s["usd"] * factor + per_node.total(), use)
    value, mix = max_fill(types, [limit for _, _, limit in resources])
    nodes = sum(mix.values())
    # Instance dollars go to the limit the fill exhausts first in relative terms (the one to lower).
    used = [sum(n * types[t][1][r] for t, n in mix.items()) / limit for r, (_, _, limit) in enumerate(resources)]
    binding = resources[max(range(len(resources)), key=lambda r: used[r])][0]
    prefix = f"nodePools.{name}"
    drivers = {
        f"{prefix}.limits.{LIMIT_SETTINGS[binding]}": value - nodes * per_node.total(),
        "logging.nodeLogRateKibPerSecond": nodes * per_node.logs,
        f"{prefix}.rootVolumeGib": nodes * per_node.root_volume,
    }
    limited = ", ".join(f"{key} {limit:g}" for key, _, limit in resources)
    detail = (
        f"{len(types)} instance types at limits {limited} (memory net of {VM_MEMORY_OVERHEAD:g} VM overhead), "
        f"each node ${per_node.total():.4f}/h of root volume and container logs"
        + (f", spot at {spot_fraction:g} of on-demand" if spot_only and factor != 1 else "")
    )
    return Item(name, value, detail, "pool", mix, nodes, {k: v for k, v in drivers.items() if v > 1e-9})


def held(instance_type: str, count: int, table: PriceTable) -> dict[str, float]:
    """What `count` nodes of a type take from a NodePool's limits as Karpenter counts them (memory net of VM overhead).
    Raises PriceError for a type the table does not list."""
    if instance_type not in table.instances:
        raise PriceError(f"{instance_type} is not in the {table.region} price table (dated {table.date})")
    s = table.instances[instance_type]
    return {
        "cpu": count * float(s["vcpu"]),
        "memory": count * float(s["memoryGib"]) * (1 - VM_MEMORY_OVERHEAD),
        **{key: count * float(s.get(f, 0)) for key, f in ACCELERATOR_FIELDS.items()},
    }


def static_line(pool: dict, per_node: NodeCosts, table: PriceTable) -> Item:
    """A static NodePool (`spec.replicas`) keeps its nodes running: a fixed line, every replica at the on-demand rate
    of its one instance type with its root volume and logs."""
    name, spec = pool["metadata"]["name"], pool["spec"]
    requirement = _requirement(spec["template"]["spec"].get("requirements") or [], "node.kubernetes.io/instance-type")
    (instance_type,) = requirement["values"]
    if instance_type not in table.instances:
        raise PriceError(f"node pool {name!r} keeps {instance_type} warm, which the {table.region} price table (dated {table.date}) does not list")
    replicas = int(spec["replicas"])
    hourly = replicas * (table.instances[instance_type]["usd"] + per_node.total())
    setting = f"nodePools.{name.removesuffix('-static')}.static"
    return Item(name, hourly, f"{replicas} x {instance_type} kept running (static NodePool)", "fixed", nodes=float(replicas), drivers={setting: hourly})


def reserved_line(pool: dict, per_node: NodeCosts, table: PriceTable) -> tuple[Optional[Item], dict]:
    """The prepaid line of a pool's capacity reservations, and the pool's spec left to price beside it.

    A reservation is paid for every hour whether or not a node runs in it (priced here at the on-demand rate, with
    each node's root volume and logs), and its nodes count against the NodePool's limits (memory as Karpenter counts
    it, net of VM overhead): the pool is priced on what its limits leave after them, so no instance is priced twice."""
    name, spec = pool["metadata"]["name"], pool["spec"]
    raw = ((pool["metadata"].get("annotations") or {}).get(RESERVED_ANNOTATION)) or ""
    counts = {t: int(n) for t, n in (entry.split("=") for entry in raw.split(",") if entry)}
    if not counts:
        return None, spec
    missing = sorted(t for t in counts if t not in table.instances)
    if missing:
        raise PriceError(f"node pool {name!r} reserves {', '.join(missing)}, which the {table.region} price table (dated {table.date}) does not list")
    hourly = sum(n * (table.instances[t]["usd"] + per_node.total()) for t, n in counts.items())
    limits = dict(spec.get("limits") or {})
    for key, field_name in (("cpu", "vcpu"), ("memory", "memoryGib"), *ACCELERATOR_FIELDS.items()):
        if key not in limits:
            continue
        share = 1 - VM_MEMORY_OVERHEAD if key == "memory" else 1
        left = quantity(limits[key]) - sum(n * float(table.instances[t].get(field_name, 0)) * share for t, n in counts.items())
        if left < -1e-9:
            raise PriceError(
                f"node pool {name!r}: capacityReservations hold more {key} than its limits allow ({limits[key]}), so part of the "
                f"prepaid capacity could never run; raise nodePools.{name}.limits or reserve less"
            )
        limits[key] = f"{max(left, 0):g}Gi" if key == "memory" else f"{max(left, 0):g}"
    held = ", ".join(f"{n} x {t}" for t, n in counts.items())
    item = Item(f"reserved-{name}", hourly, f"prepaid capacity reservations of pool {name!r}: {held}", "fixed",
                nodes=float(sum(counts.values())), drivers={f"nodePools.{name}.capacityReservations": hourly})
    return item, {**spec, "limits": limits}


def _tags(props: dict) -> dict:
    return props.get("tags") or {}


def ceiling(resources: Iterable[tuple[str, dict]], region: str, today: datetime.date) -> Ceiling:
    """Worst-case hourly cost of a stack from (type, properties) of its resources."""
    resources = list(resources)
    by_type: dict[str, list[dict]] = {}
    for t, props in resources:
        by_type.setdefault(t, []).append(props)
    budget = (by_type.get(BUDGET) or [{}])[0]
    table = price_table(region, _tags(budget).get(PRICE_TABLE_TAG))
    svc = table.services
    spot_fraction = float(_tags(budget).get(SPOT_FRACTION_TAG, 1.0))
    assumptions = [
        f"on-demand Linux prices of {table.region} dated {table.date} (policies/prices/{table.region}.json)",
        "node pools at their limits, filled by the most expensive mix of allowed instance types with each node's root volume and logs (a bound at most one node per type above any real fill)",
        f"memory net of Karpenter's {VM_MEMORY_OVERHEAD:g} VM overhead (vmMemoryOverheadPercent at its default)",
        "spot capacity priced at on-demand" if spot_fraction == 1 else f"spot-only pools priced at {spot_fraction:g} of on-demand",
        "not included: data transfer and NAT data processing other than the container logs, EFS storage and throughput, S3 and ECR storage, API requests, KMS keys ($1 a month each)",
    ]
    if table.substitute_for:
        assumptions.insert(0, f"no price table for {table.substitute_for}: priced with {table.region}'s as budget.priceTableRegion asks (run policies/prices/refresh.py --region {table.substitute_for})")
    items: list[Item] = []

    log_rate = float(_tags(budget).get(NODE_LOG_RATE_TAG, 0))
    log_gib_per_hour = log_rate * 3600 / 1024**2
    retention = max((g.get("retentionInDays") or 0 for g in by_type.get("aws:cloudwatch/logGroup:LogGroup", []) if "/ml-platform/" in str(g.get("name"))), default=0)
    endpoints = by_type.get("aws:ec2/vpcEndpoint:VpcEndpoint", [])
    logs_via_endpoint = any(e.get("vpcEndpointType") == "Interface" and str(e.get("serviceName", "")).endswith(".logs") for e in endpoints)
    if log_rate:
        assumptions.append(
            f"every node logs {log_rate:g} KiB/s (logging.nodeLogRateKibPerSecond), kept {retention} days, stored at "
            f"{svc['cloudwatchLogsStorageCompression']:g} of the ingested size (the compression factor of the AWS Pricing Calculator), "
            + ("sent through the CloudWatch Logs interface endpoint" if logs_via_endpoint else "sent through the NAT gateways")
        )
    root_gib = {
        (c.get("metadata") or {}).get("name"): max((quantity(m["ebs"]["volumeSize"]) for m in (c.get("spec") or {}).get("blockDeviceMappings") or [] if m.get("ebs")), default=0.0)
        for c in by_type.get(NODE_CLASS, [])
    }
    for pool in sorted(by_type.get(NODE_POOL, []), key=lambda p: p["metadata"]["name"]):
        name = pool["metadata"]["name"]
        per_node = node_costs(root_gib.get(pool["spec"]["template"]["spec"]["nodeClassRef"]["name"], 0.0), log_gib_per_hour, table, retention, logs_via_endpoint)
        if "replicas" in pool["spec"]:
            items.append(static_line(pool, per_node, table))
            continue
        reserved, spec = reserved_line(pool, per_node, table)
        if reserved:
            items.append(reserved)
        if any(quantity(v) <= 0 for v in (spec.get("limits") or {}).values()):
            items.append(Item(name, 0.0, "its reservations or static nodes take all of a limit: the pool can buy nothing beside them", "pool"))
        else:
            items.append(pool_item(name, spec, per_node, table, spot_fraction))

    def fixed(name: str, hourly: float, detail: str, setting: str) -> None:
        if hourly:
            items.append(Item(name, hourly, detail, "fixed", drivers={setting: hourly}))

    for cluster in by_type.get("aws:eks/cluster:Cluster", []):
        status, _ = kubernetes_status(str(cluster.get("version")), today)
        extended = status == EXTENDED
        fixed("eks-control-plane", svc["eksClusterExtendedSupportHour" if extended else "eksClusterHour"],
              f"Kubernetes {cluster.get('version')}, {'extended' if extended else 'standard'} support", "cluster.kubernetesVersion")
    templates = {lt.get("name") or lt.get("namePrefix"): lt for lt in by_type.get("aws:ec2/launchTemplate:LaunchTemplate", [])}
    for group in by_type.get("aws:eks/nodeGroup:NodeGroup", []):
        size = group["scalingConfig"]["maxSize"]
        priciest = max(group["instanceTypes"], key=lambda t: table.instances[t]["usd"] if t in table.instances else math.inf)
        if priciest not in table.instances:
            raise PriceError(f"the system node group allows {priciest}, which the {table.region} price table does not list")
        disk = max((m["ebs"]["volumeSize"] for lt in templates.values() for m in lt.get("blockDeviceMappings") or [] if m.get("ebs")), default=20)
        per_node = node_costs(float(disk), log_gib_per_hour, table, retention, logs_via_endpoint)
        fixed("system-node-group", size * (table.instances[priciest]["usd"] + per_node.total()), f"{size} x {priciest} (maxSize) with {disk} GiB gp3 and their container logs", "cluster.systemNodeGroup.maxSize")
    nat = len(by_type.get("aws:ec2/natGateway:NatGateway", []))
    fixed("nat-gateways", nat * svc["natGatewayHour"], f"{nat} NAT gateway(s), hourly charge", "network.natGateways")
    eips = len(by_type.get("aws:ec2/eip:Eip", []))
    fixed("public-ipv4", eips * svc["publicIpv4Hour"], f"{eips} Elastic IP(s)", "network.natGateways")
    interface_endpoints = [e for e in by_type.get("aws:ec2/vpcEndpoint:VpcEndpoint", []) if e.get("vpcEndpointType") == "Interface"]
    endpoint_azs = sum(len(e.get("subnetIds") or []) for e in interface_endpoints)
    fixed("vpc-interface-endpoints", endpoint_azs * svc["vpcInterfaceEndpointAzHour"], f"{len(interface_endpoints)} endpoint(s) over {endpoint_azs} AZ attachments, hourly charge", "network.azCount")
    balancers = [s for s in by_type.get("kubernetes:core/v1:Service", []) if (s.get("spec") or {}).get("type") == "LoadBalancer"]
    fixed("network-load-balancers", len(balancers) * (svc["nlbHour"] + svc["nlbLcuHour"]), f"{len(balancers)} NLB(s) with one NLCU each", "network-load-balancers")
    for domain in by_type.get("aws:opensearch/domain:Domain", []):
        cc, ebs = domain["clusterConfig"], domain.get("ebsOptions") or {}
        search_prices = svc["openSearchInstanceHour"]
        for kind in filter(None, [cc["instanceType"], cc.get("dedicatedMasterType") if cc.get("dedicatedMasterEnabled") else None]):
            if kind not in search_prices:
                raise PriceError(f"the OpenSearch domain uses {kind}, which the {table.region} price table does not list")
        data = cc["instanceCount"] * (search_prices[cc["instanceType"]] + ebs.get("volumeSize", 0) * svc["openSearchGp3GibMonth"] / HOURS_PER_MONTH)
        managers = cc.get("dedicatedMasterCount", 0) * search_prices[cc["dedicatedMasterType"]] if cc.get("dedicatedMasterEnabled") else 0.0
        fixed("opensearch-domain", data + managers, f"{cc['instanceCount']} x {cc['instanceType']} with {ebs.get('volumeSize', 0)} GiB gp3" + (f", {cc['dedicatedMasterCount']} x {cc['dedicatedMasterType']}" if managers else ""), "logging.openSearch")
    msk_item(by_type, fixed, assumptions)
    for bucket in by_type.get(S3_BUCKET, []):
        gib = float(_tags(bucket).get(BUDGETED_GIB_TAG, 0))
        setting = _tags(bucket).get(BUDGETED_BY_TAG, "kubeflow.pipelines.artifacts.budgetedGib")
        fixed(f"s3-{bucket.get('bucket')}", gib * S3_PRICES["standardGbMonth"] / HOURS_PER_MONTH, f"{gib:g} GiB of S3 Standard (the budgeted size)", setting)
    if by_type.get(S3_BUCKET):
        assumptions.append("S3 at us-east-1 list prices for the budgeted size; not included: requests, KMS requests, data transfer")
    if by_type.get(EKS_CAPABILITY):
        # The chart path's pods are inside the cpu pool's limits; the capability is billed by EKS and not yet priced here.
        assumptions.append("not included: the EKS Argo CD capability's hourly and per-application charges (not in the price table yet)")
    aurora_item(by_type, fixed, assumptions)
    return Ceiling(table.region, table.date, items, assumptions)


def msk_item(by_type: dict[str, list[dict]], fixed, assumptions: list[str]) -> None:
    """MSK: brokers with their storage grown to the autoscaling maximum, or Serverless' cluster and partitions."""
    partitions = sum(int(t.get("partitionCount") or 0) for t in by_type.get(MSK_TOPIC, []))
    for cluster in by_type.get(MSK_CLUSTER, []):
        info = cluster["brokerNodeGroupInfo"]
        kind, brokers = info["instanceType"], int(cluster["numberOfBrokerNodes"])
        if kind not in MSK_PRICES["brokerHour"]:
            raise PriceError(f"the MSK cluster uses {kind}, which the MSK price list (policies/rules/cost.py) does not hold")
        volume = float(dig(info, "storageInfo", "ebsStorageInfo", "volumeSize", default=0))
        grown = max([volume, *(float(t.get("maxCapacity") or 0) for t in by_type.get(STORAGE_TARGET, []) if t.get("serviceNamespace") == "kafka")])
        hourly = brokers * (MSK_PRICES["brokerHour"][kind] + grown * MSK_PRICES["storageGbMonth"] / HOURS_PER_MONTH)
        fixed("msk-cluster", hourly, f"{brokers} x {kind} with {grown:g} GB each (storage autoscaling maximum)", "streaming.provisioned")
    for _ in by_type.get(MSK_SERVERLESS, []):
        hourly = MSK_PRICES["serverlessClusterHour"] + partitions * MSK_PRICES["serverlessPartitionHour"]
        fixed("msk-serverless", hourly, f"one cluster with {partitions} partition(s)", "streaming.teams")
    if by_type.get(MSK_CLUSTER) or by_type.get(MSK_SERVERLESS):
        assumptions.append("MSK at us-east-1 list prices; not included: MSK Serverless data in/out and storage, MSK data transfer")


def aurora_item(by_type: dict[str, list[dict]], fixed, assumptions: list[str]) -> None:
    """Aurora Serverless v2: every instance at the cluster's maximum capacity."""
    serverless = [i for i in by_type.get(AURORA_INSTANCE, []) if i.get("instanceClass") == "db.serverless"]
    for cluster in by_type.get(AURORA_CLUSTER, []):
        acus = float(dig(cluster, "serverlessv2ScalingConfiguration", "maxCapacity", default=0))
        hourly = len(serverless) * acus * AURORA_PRICES["acuHour"]
        fixed("aurora-database", hourly, f"{len(serverless)} Serverless v2 instance(s) at {acus:g} ACUs (maxCapacity)", "database.maxCapacity")
    if by_type.get(AURORA_CLUSTER):
        assumptions.append("Aurora at us-east-1 list prices; not included: its storage and I/O, which grow with use, not with capacity")


def budget_settings(resources: Iterable[tuple[str, dict]]) -> Optional[tuple[float, str]]:
    """(hourly ceiling, region) from the stack's AWS Budget."""
    for t, props in resources:
        tags = _tags(props)
        if t == BUDGET and MAX_HOURLY_TAG in tags and PRICE_REGION_TAG in tags:
            return float(tags[MAX_HOURLY_TAG]), tags[PRICE_REGION_TAG]
    return None


@stack_rule(
    "cost-within-budget",
    "The stack's worst-case hourly cost (every node pool at its limits plus the fixed items, priced from the "
    "dated table in policies/prices) stays within budget.maxHourlyUsd, the limit the program puts on its AWS Budget.",
    "Lower the limits of the pool named, allow cheaper instance types, or raise budget.maxHourlyUsd in the stack file.",
    MANDATORY,
)
def cost_within_budget(resources, settings):
    pairs = [(r.resource_type, r.props) for r in resources]
    found = budget_settings(pairs)
    if found is None:
        # A stack that runs no cluster (an app team's, say) spends within the platform's budget.
        if any(t in (NODE_POOL, "aws:eks/cluster:Cluster") for t, _ in pairs):
            yield "the stack has no AWS Budget carrying its hourly ceiling (budget.maxHourlyUsd)", None
        return
    budget, region = found
    at = next(r.urn for r in resources if r.resource_type == BUDGET)
    try:
        result = ceiling(pairs, region, datetime.date.today())
    except PriceError as exc:
        yield str(exc), at
        return
    if result.fixed > budget:
        setting, usd = result.dominant("fixed")
        yield f"the fixed costs alone (${result.fixed:,.2f}/h) exceed budget.maxHourlyUsd ${budget:,.2f}/h; {setting} weighs most (${usd:,.2f}/h)", at
    elif result.total > budget:
        yield over_budget_message(result, budget), at


def over_budget_message(result: Ceiling, budget: float) -> str:
    """Names the pool that weighs most and the setting whose dollars dominate the whole ceiling."""
    top = result.top_pool()
    setting, usd = result.dominant()
    return (
        f"worst-case cost ${result.total:,.2f}/h exceeds budget.maxHourlyUsd ${budget:,.2f}/h; {setting} drives the most "
        f"(${usd:,.2f}/h); node pool {top.name!r} contributes the most (${top.hourly_usd:,.2f}/h: {top.detail})"
    )
