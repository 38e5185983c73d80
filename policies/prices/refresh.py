"""Rewrites policies/prices/<region>.json from the AWS Price List API and EC2's instance type descriptions.

    .venv/bin/python policies/prices/refresh.py --region us-west-2 [--profile NAME]

Needs pricing:GetProducts and ec2:DescribeInstanceTypes. On-demand, Linux, shared tenancy, no pre-installed
software; each instance type with its vCPUs, memory, architecture and accelerator counts (what the cost model
fills pool limits with). Service prices (EKS, NAT, NLB, VPC endpoints, EBS, CloudWatch Logs, OpenSearch) keep
the values of the region's existing table unless --services names a JSON file with new ones (required for a
region with no table yet, and holding every key us-east-1.json has): the Price List spreads them over products
whose attributes differ per service, so they are reviewed by hand.
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

HERE = Path(__file__).resolve().parent
# The Price List API answers in us-east-1 (and ap-south-1, eu-central-1) for every region.
PRICING_REGION = "us-east-1"
FILTERS = {
    "operatingSystem": "Linux",
    "tenancy": "Shared",
    "preInstalledSw": "NA",
    "capacitystatus": "Used",
    "licenseModel": "No License required",
}


def on_demand_usd(product: dict[str, Any]) -> Optional[float]:
    """The hourly on-demand price of one Price List product document, None when it has none."""
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        for dimension in term.get("priceDimensions", {}).values():
            if dimension.get("unit") == "Hrs" and "USD" in dimension.get("pricePerUnit", {}):
                usd = float(dimension["pricePerUnit"]["USD"])
                return usd if usd > 0 else None
    return None


def instance_prices(products: Iterable[str]) -> dict[str, float]:
    prices = {}
    for text in products:
        product = json.loads(text)
        instance_type = product.get("product", {}).get("attributes", {}).get("instanceType")
        usd = on_demand_usd(product)
        if instance_type and usd:
            prices[instance_type] = usd
    return prices


def instance_spec(description: dict[str, Any]) -> dict[str, Any]:
    """vCPUs, memory, architecture, category, generation and accelerators of one DescribeInstanceTypes entry."""
    family = description["InstanceType"].split(".")[0]
    match = re.match(r"^([a-z]+?)(\d+)", family)
    category, generation = (match.group(1), int(match.group(2))) if match else (family, 0)
    arch = "arm64" if "arm64" in description["ProcessorInfo"]["SupportedArchitectures"] else "amd64"
    spec: dict[str, Any] = {
        "vcpu": description["VCpuInfo"]["DefaultVCpus"],
        "memoryGib": round(description["MemoryInfo"]["SizeInMiB"] / 1024, 3),
        "arch": arch,
        "category": category,
        "generation": generation,
    }
    gpus = sum(g["Count"] for g in description.get("GpuInfo", {}).get("Gpus", []) if g.get("Manufacturer") == "NVIDIA")
    if gpus:
        spec["nvidiaGpus"] = gpus
    neuron = sum(a["Count"] for a in description.get("NeuronInfo", {}).get("NeuronDevices", []))
    neuron = neuron or sum(a["Count"] for a in description.get("InferenceAcceleratorInfo", {}).get("Accelerators", []))
    if neuron:
        spec["neuronDevices"] = neuron
    return spec


def table(region: str, prices: dict[str, float], specs: dict[str, dict[str, Any]], services: dict[str, Any], today: datetime.date) -> str:
    instances = {t: {**specs[t], "usd": prices[t]} for t in sorted(prices) if t in specs}
    head = {
        "region": region,
        "currency": "USD",
        "date": today.isoformat(),
        "source": {
            "instances": f"AWS Price List API (AmazonEC2, on-demand, {', '.join(f'{k}={v}' for k, v in FILTERS.items())}) and EC2 DescribeInstanceTypes, read by policies/prices/refresh.py",
            "services": "reviewed by hand against the AWS pricing pages of the region",
        },
        "services": services,
    }
    text = json.dumps(head, indent=2)[:-2]
    rows = ",\n".join(f"    {json.dumps(t)}: {json.dumps(e, sort_keys=True)}" for t, e in instances.items())
    return text + ',\n  "instances": {\n' + rows + "\n  }\n}\n"


def checked_services(region: str, services_file: Optional[Path], existing: Path) -> dict[str, Any]:
    """The region's service prices: the given file, else the region's current table; never another region's
    (they differ by region), and with every key the cost model reads."""
    if services_file is None and not existing.exists():
        raise ValueError(f"{region} has no price table yet: pass --services with its reviewed service prices")
    services = json.loads(services_file.read_text()) if services_file else json.loads(existing.read_text())["services"]
    missing = sorted(set(json.loads((HERE / "us-east-1.json").read_text())["services"]) - set(services))
    if missing:
        raise ValueError(f"service prices for {region} lack {', '.join(missing)}")
    return services


def main(argv: Optional[list[str]] = None) -> int:
    import boto3

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", required=True)
    parser.add_argument("--profile")
    parser.add_argument("--services", type=Path, help="a JSON file of service prices for the region")
    args = parser.parse_args(argv)
    existing = HERE / f"{args.region}.json"
    try:
        services = checked_services(args.region, args.services, existing)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    session = boto3.Session(profile_name=args.profile)
    pricing = session.client("pricing", region_name=PRICING_REGION)
    filters = [{"Type": "TERM_MATCH", "Field": "regionCode", "Value": args.region}]
    filters += [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in FILTERS.items()]
    products = [p for page in pricing.get_paginator("get_products").paginate(ServiceCode="AmazonEC2", Filters=filters) for p in page["PriceList"]]
    ec2 = session.client("ec2", region_name=args.region)
    specs = {d["InstanceType"]: instance_spec(d) for page in ec2.get_paginator("describe_instance_types").paginate() for d in page["InstanceTypes"]}
    existing.write_text(table(args.region, instance_prices(products), specs, services, datetime.date.today()))
    print(f"wrote {existing}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
