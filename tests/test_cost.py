"""The worst-case hourly cost: the bound it computes, the table it prices with, and the budget it is held to."""
from __future__ import annotations

import copy
import datetime
import importlib.util
import itertools
import json
import random

import boto3
import pytest
from moto import mock_aws

from infra import cost
from infra.config import ConfigError
from infra.offline.policy_check import check
from policies.rules import cost as rule
from tests.conftest import ROOT, STACKS, synth_of
from tests.test_config import parse_stack, stack_raw

# Loaded under its own name: schemas/refresh.py is `refresh` to other tests.
_spec = importlib.util.spec_from_file_location("price_refresh", ROOT / "policies" / "prices" / "refresh.py")
refresh = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(refresh)

TODAY = datetime.date(2026, 12, 1)


@pytest.mark.parametrize("stack", STACKS)
def test_the_outputs_state_the_ceiling_the_graph_costs(stack):
    """The program prices what it plans from the config; the synth and the pack price the registered graph."""
    result = synth_of(stack).result
    assert result.outputs["cost"]["ceilingHourlyUsd"] == result.cost["totalHourlyUsd"]
    assert result.outputs["cost"]["fixedHourlyUsd"] == result.cost["fixedHourlyUsd"]
    assert result.outputs["cost"]["budgetHourlyUsd"] == result.cost["budgetHourlyUsd"] == parse_stack(stack_raw(stack)).budget.max_hourly_usd


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_fits_its_budget_and_prices_every_pool(stack):
    c = synth_of(stack).result.cost
    cfg = parse_stack(stack_raw(stack))
    assert 0 < c["totalHourlyUsd"] <= c["budgetHourlyUsd"]
    assert set(c["pools"]) == set(cfg.node_pools.enabled())
    assert {"eks-control-plane", "nat-gateways", "system-node-group", "network-load-balancers"} <= set(c["fixed"])
    assert ("opensearch-domain" in c["fixed"]) == cfg.logging.open_search.enabled


def test_a_pool_is_bounded_by_its_limits_and_its_priciest_fill():
    types = {"a": (1.0, [2.0, 4.0]), "b": (3.0, [4.0, 32.0])}
    value, mix = rule.max_fill(types, [8.0, 32.0])
    # 2a + 4b <= 8 and 4a + 32b <= 32 are both binding at a = 8/3, b = 2/3.
    assert value == pytest.approx(8 / 3 + 2) and mix == pytest.approx({"a": 8 / 3, "b": 2 / 3})


def test_the_bound_is_never_below_a_real_fill_and_at_most_a_node_per_type_above():
    rng = random.Random(7)
    for _ in range(20):
        types = {f"t{i}": (round(rng.uniform(0.1, 5), 2), [rng.choice([2, 4, 8]), rng.choice([4, 8, 16, 32]), rng.choice([0, 1, 4])]) for i in range(3)}
        limits = [rng.choice([8, 16, 24]), rng.choice([32, 64]), rng.choice([2, 4, 8])]
        bound, mix = rule.max_fill(types, limits)
        best = 0.0
        for counts in itertools.product(range(13), repeat=len(types)):
            uses = [sum(c * types[t][1][r] for c, t in zip(counts, types)) for r in range(3)]
            if all(u <= lim for u, lim in zip(uses, limits)):
                best = max(best, sum(c * types[t][0] for c, t in zip(counts, types)))
        assert best <= bound + 1e-9
        assert bound <= best + sum(types[t][0] for t in mix) + 1e-9


def test_spot_only_pools_are_priced_at_on_demand_unless_the_budget_says_otherwise():
    raw = stack_raw("staging")
    raw["nodePools"]["nvidia"]["capacityTypes"] = ["spot"]
    raw["nodePools"]["nvidia"].pop("capacityReservations", None)
    at_on_demand = cost.checked_ceiling(parse_stack(raw), TODAY)
    raw["budget"]["spotPriceFraction"] = 0.4
    discounted = cost.checked_ceiling(parse_stack(raw), TODAY)
    nvidia = lambda c: next(i for i in c.items if i.name == "nvidia")  # noqa: E731
    assert nvidia(discounted).hourly_usd < nvidia(at_on_demand).hourly_usd
    assert {i.name: i.hourly_usd for i in discounted.items if i.name != "nvidia"} == {i.name: i.hourly_usd for i in at_on_demand.items if i.name != "nvidia"}


def test_a_stack_over_budget_fails_the_mandatory_rule_naming_the_largest_pool(prod):
    records = copy.deepcopy(prod.resources)
    budget = next(r for r in records if r["type"] == rule.BUDGET)
    budget["outputs"]["tags"][rule.MAX_HOURLY_TAG] = "100"
    [violation] = [v for v in check(records, "prod", rules=[rule.cost_within_budget])["violations"]]
    assert violation["enforcement"] == "mandatory"
    assert "exceeds budget.maxHourlyUsd $100.00/h" in violation["message"] and "node pool 'cpu' contributes the most" in violation["message"]
    # prod's CPU pool is bound by its CPU limit: that is the setting to lower.
    assert "nodePools.cpu.limits.cpu drives the most" in violation["message"]


def test_the_over_budget_message_names_the_log_rate_when_logs_dominate():
    raw = stack_raw("prod")
    raw["logging"]["nodeLogRateKibPerSecond"] = 2048
    result = cost.checked_ceiling(parse_stack(raw), TODAY)
    assert result.dominant()[0] == "logging.nodeLogRateKibPerSecond"
    assert "logging.nodeLogRateKibPerSecond drives the most" in rule.over_budget_message(result, 100)


def test_pool_limits_raised_50x_leave_the_fixed_cost_unchanged():
    raw = stack_raw("prod")
    base = cost.checked_ceiling(parse_stack(raw), TODAY)
    for pool in raw["nodePools"].values():
        pool["limits"] = {k: v * 50 for k, v in pool["limits"].items()}
    raised = cost.checked_ceiling(parse_stack(raw), TODAY)
    assert raised.fixed == base.fixed
    assert {i.name for i in raised.items if i.kind == "fixed"} == {i.name for i in base.items if i.kind == "fixed"}
    assert raised.total > 40 * (base.total - base.fixed)


def _pool(types, limits):
    spec = {
        "template": {"spec": {"requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": sorted(types)}]}},
        "limits": {"cpu": str(limits[0]), "memory": f"{limits[1]}Gi"},
    }
    table = rule.PriceTable("test-1", "2026-01-01", types, rule.price_table("us-east-1").services)
    return spec, table


def test_brute_force_the_ceiling_is_never_below_any_feasible_fill_of_a_small_pool():
    """Every integer fill Karpenter could make (memory counted net of VM overhead, each node with its root volume and
    logs) costs at most the pool's ceiling."""
    rng = random.Random(21)
    for _ in range(25):
        types = {
            f"t{i}.large": {"vcpu": rng.choice([1, 2, 4]), "memoryGib": rng.choice([2.0, 4.0, 8.0, 16.0]), "usd": round(rng.uniform(0.01, 0.5), 3)}
            for i in range(3)
        }
        limits = (rng.choice([4, 8, 12]), rng.choice([8, 16, 30]))
        spec, table = _pool(types, limits)
        per_node = rule.node_costs(rng.choice([20, 100, 500]), rng.choice([0.01, 0.1, 1.0]), table, rng.choice([1, 30, 365]), rng.random() < 0.5)
        item = rule.pool_item("cpu", spec, per_node, table, 1.0)
        names = sorted(types)
        best = 0.0
        for counts in itertools.product(range(limits[0] + 1), repeat=len(names)):
            cpu = sum(c * types[t]["vcpu"] for c, t in zip(counts, names))
            memory = sum(c * types[t]["memoryGib"] * (1 - rule.VM_MEMORY_OVERHEAD) for c, t in zip(counts, names))
            if cpu <= limits[0] and memory <= limits[1]:
                best = max(best, sum(c * (types[t]["usd"] + per_node.total()) for c, t in zip(counts, names)))
        assert best <= item.hourly_usd + 1e-9, (types, limits)
        assert item.hourly_usd == pytest.approx(sum(item.drivers.values()))


def test_memory_counts_net_of_karpenters_vm_overhead():
    spec, table = _pool({"r.large": {"vcpu": 1, "memoryGib": 8.0, "usd": 0.1}}, (1000, 74))
    item = rule.pool_item("cpu", spec, rule.NodeCosts(), table, 1.0)
    # 74 GiB of limit holds 10 nodes of 8 * 0.925 GiB, where nominal memory would admit 9.25.
    assert item.nodes == pytest.approx(10) and item.hourly_usd == pytest.approx(1.0)
    assert "nodePools.cpu.limits.memoryGib" in item.drivers


def test_log_storage_is_priced_compressed_and_logs_scale_with_the_pool():
    table = rule.price_table("us-east-1")
    svc = table.services
    costs = rule.node_costs(0, 1.0, table, 30, logs_via_endpoint=True)
    stored = svc["cloudwatchLogsStorageCompression"] * 24 * 30 * svc["cloudwatchLogsStoredGibMonth"] / rule.HOURS_PER_MONTH
    assert svc["cloudwatchLogsStorageCompression"] == 0.15
    assert costs.logs == pytest.approx(svc["cloudwatchLogsIngestedGib"] + stored + svc["vpcInterfaceEndpointGib"])
    assert rule.node_costs(0, 1.0, table, 30, logs_via_endpoint=False).logs - costs.logs == pytest.approx(svc["natGatewayGib"] - svc["vpcInterfaceEndpointGib"])


def test_the_shipped_stacks_pass_the_budget_rule(stack):
    assert [v for v in stack.result.policy["violations"] if v["policy"] == "cost-within-budget"] == []


def test_a_budget_below_the_fixed_costs_is_a_config_error():
    raw = stack_raw("prod")
    raw["budget"]["maxHourlyUsd"] = 2
    with pytest.raises(ConfigError) as exc:
        cost.checked_ceiling(parse_stack(raw), TODAY)
    assert "ml-platform:budget.maxHourlyUsd: 2 is below the stack's fixed costs" in str(exc.value) and "opensearch-domain" in str(exc.value)
    assert "shrink database.maxCapacity, which weighs most" in str(exc.value)


def test_the_rule_names_the_fixed_setting_that_weighs_most(prod):
    records = copy.deepcopy(prod.resources)
    next(r for r in records if r["type"] == rule.BUDGET)["outputs"]["tags"][rule.MAX_HOURLY_TAG] = "1"
    [violation] = check(records, "prod", rules=[rule.cost_within_budget])["violations"]
    assert "the fixed costs alone" in violation["message"] and "database.maxCapacity weighs most" in violation["message"]


def test_an_instance_type_the_price_table_lacks_is_a_config_error_naming_it():
    raw = stack_raw("prod")
    raw["nodePools"]["nvidia"]["instanceTypes"] = ["g5.xlarge", "g5.96xlarge"]
    with pytest.raises(ConfigError) as exc:
        cost.checked_ceiling(parse_stack(raw), TODAY)
    assert "node pool 'nvidia' allows g5.96xlarge, which the us-east-1 price table" in str(exc.value)


def test_the_synth_exits_2_before_anything_on_a_budget_below_fixed_costs(tmp_path, capsys):
    from infra import synth

    text = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text().replace("maxHourlyUsd: 60", "maxHourlyUsd: 0.5")
    (tmp_path / "Pulumi.dev.yaml").write_text(text)
    assert synth.main(["--stack", "dev", "--config", str(tmp_path / "Pulumi.dev.yaml"), "--out", str(tmp_path / "out")]) == 2
    assert "ml-platform:budget.maxHourlyUsd: 0.5 is below the stack's fixed costs" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_region_without_a_table_is_priced_with_the_stand_in_the_stack_names_and_says_so(dev):
    cfg = parse_stack(stack_raw("dev"))
    assert cfg.region == "us-west-2" and cfg.budget.price_table_region == "us-east-1"
    assert dev.result.cost["assumptions"][0].startswith("no price table for us-west-2: priced with us-east-1's as budget.priceTableRegion asks")


@pytest.mark.parametrize("stack", STACKS)
def test_each_stack_is_priced_from_its_own_region_or_the_stand_in_it_names(stack):
    cfg = parse_stack(stack_raw(stack))
    expected = cfg.region if (rule.PRICES / f"{cfg.region}.json").exists() else cfg.budget.price_table_region
    assert synth_of(stack).result.cost["region"] == expected


def test_the_synth_exits_2_naming_a_region_with_no_table_and_the_refresh_command(tmp_path, capsys):
    from infra import synth

    text = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text().replace("    priceTableRegion: us-east-1\n", "")
    (tmp_path / "Pulumi.dev.yaml").write_text(text)
    assert synth.main(["--stack", "dev", "--config", str(tmp_path / "Pulumi.dev.yaml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "aws:region: no price table for us-west-2" in err and "policies/prices/refresh.py --region us-west-2" in err
    assert not (tmp_path / "out").exists()


def test_the_summary_prints_the_ceiling_and_writes_cost_json(tmp_path):
    from infra import synth

    result = synth_of("prod").result
    synth.write_artifacts(result, tmp_path)
    assert json.loads((tmp_path / "cost.json").read_text()) == result.cost
    summary = synth._summary(result, tmp_path, 1.0)
    assert f"cost ceiling: ${result.cost['totalHourlyUsd']:,.2f}/h worst case (budget $500.00/h" in summary


# The price table and the script that refreshes it.


def test_the_price_table_is_dated_and_lists_every_type_the_stacks_name():
    table = json.loads((ROOT / "policies" / "prices" / "us-east-1.json").read_text())
    assert table["region"] == "us-east-1" and datetime.date.fromisoformat(table["date"])
    for stack in STACKS:
        cfg = parse_stack(stack_raw(stack))
        named = [*cfg.cluster.system_node_group.instance_types]
        named += [t for pool in (cfg.node_pools.nvidia, cfg.node_pools.neuron) if pool and pool.enabled for t in pool.instance_types]
        assert set(named) <= set(table["instances"]), stack


@mock_aws
def test_refresh_reads_specs_as_ec2_describes_them_and_they_match_the_table():
    table = json.loads((ROOT / "policies" / "prices" / "us-east-1.json").read_text())["instances"]
    names = ["g5.xlarge", "g6e.2xlarge", "inf1.6xlarge", "inf2.8xlarge", "m7i.xlarge", "c7g.large", "r7iz.large"]
    described = boto3.client("ec2", region_name="us-east-1").describe_instance_types(InstanceTypes=names)["InstanceTypes"]
    for d in described:
        assert refresh.instance_spec(d) == {k: v for k, v in table[d["InstanceType"]].items() if k != "usd"}, d["InstanceType"]


def test_refresh_reads_the_hourly_on_demand_price_of_a_price_list_product():
    product = {
        "product": {"attributes": {"instanceType": "g5.xlarge", "operatingSystem": "Linux"}},
        "terms": {"OnDemand": {"X.JRTCKXETXF": {"priceDimensions": {"X.JRTCKXETXF.6YS6EN2CT7": {"unit": "Hrs", "pricePerUnit": {"USD": "1.0060000000"}}}}}},
    }
    reserved_only = {"product": {"attributes": {"instanceType": "g5.2xlarge"}}, "terms": {"Reserved": {}}}
    assert refresh.instance_prices([json.dumps(product), json.dumps(reserved_only)]) == {"g5.xlarge": 1.006}


def test_the_cost_doc_states_the_figures_the_synth_computes():
    from infra.offline import cost_doc

    text = cost_doc.COST_DOC.read_text()
    current = cost_doc.render(text, {s: synth_of(s).result.cost for s in cost_doc.STACKS})
    assert text == current, "docs/operators/cost.md is stale: .venv/bin/python -m infra.offline.cost_doc"


def test_refresh_of_a_new_region_needs_its_own_service_prices(tmp_path, capsys):
    assert refresh.main(["--region", "eu-west-3"]) == 2
    assert "eu-west-3 has no price table yet: pass --services" in capsys.readouterr().err
    partial = tmp_path / "services.json"
    partial.write_text(json.dumps({"eksClusterHour": 0.1}))
    with pytest.raises(ValueError, match="service prices for eu-west-3 lack .*cloudwatchLogsStorageCompression"):
        refresh.checked_services("eu-west-3", partial, tmp_path / "absent.json")
    assert refresh.checked_services("us-east-1", None, ROOT / "policies" / "prices" / "us-east-1.json")["natGatewayGib"] > 0
