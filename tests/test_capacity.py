"""Reserved capacity: the config that declares it, the Karpenter objects it becomes, its prepaid cost line and the
preflight that holds the account's reservations to it."""
from __future__ import annotations

import copy
import datetime
import re

import pytest
from botocore.exceptions import ClientError

from components.karpenter import node_class_spec, node_pool_annotations, node_pool_spec
from infra import cost, preflight
from infra.config import ConfigError
from infra.lib.accelerators import NVIDIA
from policies.rules import cost as rule
from tests.conftest import synth_of
from tests.schemas import validate
from tests.test_config import error_of, parse_stack, stack_raw
from tests.test_preflight import REGION, SESSION, aws, by_name, clients_with  # noqa: F401 (aws is a fixture)

TODAY = datetime.date(2026, 12, 1)
RESERVATION = {"id": "cr-0a1b2c3d4e5f60718", "instanceType": "g6e.xlarge", "availabilityZone": "us-east-1a", "instanceCount": 2}


def reserving(raw: dict, *reservations: dict, types=("reserved", "on-demand")) -> dict:
    raw["nodePools"]["nvidia"].update(capacityTypes=list(types), capacityReservations=[dict(r) for r in reservations])
    return raw


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: reserving(r, {**RESERVATION, "id": "cr-12345"}),
         'ml-platform:nodePools.nvidia.capacityReservations[0].id: "cr-12345" is not allowed: String should match pattern'),
        (lambda r: reserving(r, {**RESERVATION, "instanceType": "p5.48xlarge"}),
         "ml-platform:nodePools.nvidia.capacityReservations[0].instanceType p5.48xlarge is not one of the pool's instanceTypes"),
        (lambda r: reserving(r, {**RESERVATION, "tags": {"team": "nlp"}}),
         "ml-platform:nodePools.nvidia.capacityReservations[0].id and tags: set exactly one of them"),
        (lambda r: reserving(r, RESERVATION, types=("reserved", "on-demand", "spot")),
         "ml-platform:nodePools.nvidia.capacityTypes ['reserved', 'on-demand', 'spot'] is the fallback order and must be one of"),
        (lambda r: reserving(r, RESERVATION, types=("on-demand", "reserved")),
         "ml-platform:nodePools.nvidia.capacityTypes ['on-demand', 'reserved'] is the fallback order"),
        (lambda r: reserving(r, types=("reserved",)),
         "ml-platform:nodePools.nvidia.capacityTypes lists reserved but capacityReservations is empty"),
        (lambda r: reserving(r, RESERVATION, types=("on-demand",)),
         "ml-platform:nodePools.nvidia.capacityReservations are set but capacityTypes does not list reserved"),
        (lambda r: reserving(r, RESERVATION, {**RESERVATION, "instanceCount": 1}),
         "ml-platform:nodePools.nvidia.capacityReservations name a reservation twice: ['cr-0a1b2c3d4e5f60718']"),
        (lambda r: r["nodePools"]["cpu"].update(capacityTypes=["reserved", "on-demand"]),
         'ml-platform:nodePools.cpu.capacityTypes[0]: "reserved" is not allowed'),
    ],
)
def test_bad_reservations_name_the_key(mutate, expected):
    message = error_of(mutate)
    assert expected in message
    assert message.count("\n") == 1, message


def test_a_reservation_outside_the_stacks_zones_names_the_key():
    assert (
        "ml-platform:nodePools.nvidia.capacityReservations[0].availabilityZone us-west-2a is not in the stack's region us-east-1"
        in error_of(lambda r: reserving(r, {**RESERVATION, "availabilityZone": "us-west-2a"}))
    )
    message = error_of(lambda r: (reserving(r, {**RESERVATION, "availabilityZone": "us-east-1d"}), r["network"].update(availabilityZones=["us-east-1a", "us-east-1b", "us-east-1c"])))
    assert "capacityReservations[0].availabilityZone us-east-1d is not one of network.availabilityZones" in message


def test_the_synth_exits_2_on_a_malformed_reservation_id(tmp_path, capsys):
    from infra import synth
    from tests.conftest import ROOT

    text = (ROOT / "stacks" / "Pulumi.staging.yaml").read_text().replace("cr-1234567890abcdef0", "cr-XYZ")
    (tmp_path / "Pulumi.staging.yaml").write_text(text)
    assert synth.main(["--stack", "staging", "--config", str(tmp_path / "Pulumi.staging.yaml"), "--out", str(tmp_path / "out")]) == 2
    assert 'ml-platform:nodePools.nvidia.capacityReservations[0].id: "cr-XYZ" is not allowed' in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_staging_pool_launches_into_its_reservation_first():
    manifests = synth_of("staging").result.manifests.values()
    node_class = next(m for m in manifests if m["kind"] == "EC2NodeClass" and m["metadata"]["name"] == "nvidia")
    pool = next(m for m in manifests if m["kind"] == "NodePool" and m["metadata"]["name"] == "nvidia")
    assert node_class["spec"]["capacityReservationSelectorTerms"] == [{"id": "cr-1234567890abcdef0"}]
    capacity = next(r for r in pool["spec"]["template"]["spec"]["requirements"] if r["key"] == "karpenter.sh/capacity-type")
    assert capacity["values"] == ["reserved", "on-demand"]
    assert pool["metadata"]["annotations"] == {rule.RESERVED_ANNOTATION: "g6e.xlarge=2"}
    others = [m for m in manifests if m["kind"] == "EC2NodeClass" and m["metadata"]["name"] != "nvidia"]
    assert others and all("capacityReservationSelectorTerms" not in m["spec"] for m in others)
    assert synth_of("staging").result.outputs["nodePools"]["nvidia"]["capacityTypes"] == ["reserved", "on-demand"]


def test_tag_selected_and_capacity_block_reservations_validate_against_the_crds():
    raw = reserving(copy.deepcopy(stack_raw("prod")), RESERVATION,
                    {"tags": {"purpose": "training"}, "ownerId": "123456789012", "type": "capacity-block",
                     "instanceType": "g6e.xlarge", "availabilityZone": "us-east-1b", "instanceCount": 1})
    pool = parse_stack(raw).node_pools.nvidia
    spec = node_class_spec(pool, "c", "role", "sg-1", {})
    assert spec["capacityReservationSelectorTerms"] == [{"id": RESERVATION["id"]}, {"tags": {"purpose": "training"}, "ownerID": "123456789012"}]
    validate({"apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass", "metadata": {"name": "nvidia"}, "spec": spec})
    validate({"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "nvidia", "annotations": node_pool_annotations(pool)},
              "spec": node_pool_spec("nvidia", pool, NVIDIA)})
    assert node_pool_annotations(pool) == {rule.RESERVED_ANNOTATION: "g6e.xlarge=3"}


def test_reserved_capacity_is_a_prepaid_line_and_is_not_priced_twice():
    table = rule.price_table("us-east-1")
    plain = parse_stack(stack_raw("prod"))
    reserved = parse_stack(reserving(copy.deepcopy(stack_raw("prod")), RESERVATION))
    before, after = cost.checked_ceiling(plain, TODAY), cost.checked_ceiling(reserved, TODAY)
    line = next(i for i in after.items if i.name == "reserved-nvidia")
    pool = next(i for i in after.items if i.name == "nvidia")
    # Each reserved node also costs what any node of the pool does beside its instance (root volume, container logs).
    per_node = float(re.search(r"each node \$([0-9.]+)/h", pool.detail).group(1))
    assert line.kind == "fixed" and line.hourly_usd == pytest.approx(2 * (table.instances["g6e.xlarge"]["usd"] + per_node), abs=1e-3)
    assert "2 x g6e.xlarge" in line.detail and line.drivers == {"nodePools.nvidia.capacityReservations": line.hourly_usd}
    # The two reserved nodes count against the pool's limits (memory net of VM overhead, as Karpenter counts it):
    # what the pool may still buy is priced beside them.
    limits = reserved.node_pools.nvidia.limits
    memory = limits.memory_gib - 2 * 32 * (1 - rule.VM_MEMORY_OVERHEAD)
    assert f"cpu {limits.cpu - 2 * 4}, memory {memory:g}, nvidia.com/gpu {limits.accelerators - 2}" in pool.detail
    assert after.fixed == pytest.approx(before.fixed + line.hourly_usd)
    assert after.total <= before.total + line.hourly_usd


def test_reservations_that_fill_a_limit_leave_the_pool_nothing_to_buy():
    raw = reserving(copy.deepcopy(stack_raw("prod")), {**RESERVATION, "instanceCount": 32})
    result = cost.checked_ceiling(parse_stack(raw), TODAY)
    pool = next(i for i in result.items if i.name == "nvidia")
    assert pool.hourly_usd == 0 and "take all of a limit" in pool.detail
    assert next(i for i in result.items if i.name == "reserved-nvidia").nodes == 32


def test_reservations_beyond_the_pools_limits_are_a_config_error():
    raw = reserving(copy.deepcopy(stack_raw("prod")), {**RESERVATION, "instanceCount": 40})
    with pytest.raises(ConfigError) as exc:
        cost.checked_ceiling(parse_stack(raw), TODAY)
    assert "ml-platform:nodePools: node pool 'nvidia': capacityReservations hold more nvidia.com/gpu than its limits allow (32)" in str(exc.value)


def test_the_program_and_the_pack_price_staging_alike():
    result = synth_of("staging").result
    assert result.cost["fixed"]["reserved-nvidia"]["detail"] == "prepaid capacity reservations of pool 'nvidia': 2 x g6e.xlarge"
    assert result.outputs["cost"]["ceilingHourlyUsd"] == result.cost["totalHourlyUsd"]


class Ec2WithReservations:
    """moto's EC2 client, with DescribeCapacityReservations (moto has no model of it) answered as EC2 shapes it."""

    def __init__(self, reservations: list[dict]):
        self._ec2 = SESSION.client("ec2", region_name=REGION)
        self._reservations = reservations

    def __getattr__(self, name):
        return getattr(self._ec2, name)

    def describe_capacity_reservations(self, CapacityReservationIds=None, Filters=None):
        found = self._reservations
        if CapacityReservationIds:
            found = [r for r in found if r["CapacityReservationId"] in CapacityReservationIds]
            if not found:
                raise ClientError({"Error": {"Code": "InvalidCapacityReservationId.NotFound", "Message": "not found"}}, "DescribeCapacityReservations")
        for f in Filters or []:
            if f["Name"].startswith("tag:"):
                key = f["Name"][4:]
                found = [r for r in found if any(t["Key"] == key and t["Value"] in f["Values"] for t in r.get("Tags", []))]
            elif f["Name"] == "owner-id":
                found = [r for r in found if r["OwnerId"] in f["Values"]]
        return {"CapacityReservations": found}


def reservation(**change) -> dict:
    return {"CapacityReservationId": RESERVATION["id"], "OwnerId": "123456789012", "InstanceType": "g6e.xlarge",
            "AvailabilityZone": "us-east-1a", "TotalInstanceCount": 2, "State": "active", "ReservationType": "default",
            "Tags": [{"Key": "purpose", "Value": "training"}], **change}


def reservation_check(found: list[dict], *declared: dict) -> preflight.Check:
    cfg = parse_stack(reserving(copy.deepcopy(stack_raw("prod")) | {"region": REGION}, *(declared or [RESERVATION])))
    base = clients_with(cfg=cfg)
    ec2 = Ec2WithReservations(found)
    checks = preflight.run_checks(cfg, lambda name: ec2 if name == "ec2" else base(name))
    return by_name(checks)["capacity reservation: nodePools.nvidia.capacityReservations[0]"]


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize(
    "found, status, detail",
    [
        ([reservation()], preflight.PASS, "cr-0a1b2c3d4e5f60718: 2 x g6e.xlarge in us-east-1a, active"),
        ([], preflight.FAIL, "no capacity reservation cr-0a1b2c3d4e5f60718 in us-east-1"),
        ([reservation(State="expired")], preflight.FAIL, "not active: cr-0a1b2c3d4e5f60718 is expired"),
        ([reservation(InstanceType="g6.xlarge")], preflight.FAIL, "cr-0a1b2c3d4e5f60718 holds g6.xlarge, the stack declares g6e.xlarge"),
        ([reservation(AvailabilityZone="us-east-1f")], preflight.FAIL, "cr-0a1b2c3d4e5f60718 is in us-east-1f, the stack declares us-east-1a"),
        ([reservation(TotalInstanceCount=1)], preflight.FAIL, "cr-0a1b2c3d4e5f60718 holds 1 instances, the stack declares 2"),
        ([reservation(ReservationType="capacity-block")], preflight.FAIL, "is of type capacity-block, the stack declares default"),
    ],
)
def test_preflight_holds_the_reservation_to_the_stack(found, status, detail):
    check = reservation_check(found)
    assert check.status == status and detail in check.detail, check


@pytest.mark.usefixtures("aws")
def test_a_capacity_block_not_yet_begun_warns_and_tags_select():
    block = {"tags": {"purpose": "training"}, "type": "capacity-block", "instanceType": "g6e.xlarge", "availabilityZone": "us-east-1a", "instanceCount": 2}
    check = reservation_check([reservation(State="scheduled", ReservationType="capacity-block", StartDate="2026-12-10T11:30:00Z")], block)
    assert check.status == preflight.WARN and "has not begun (cr-0a1b2c3d4e5f60718 at 2026-12-10T11:30:00Z)" in check.detail


def test_the_example_reservation_id_is_refused_like_other_example_values():
    bag = {"ml-platform:nodePools": '{"nvidia": {"capacityReservations": [{"id": "cr-1234567890abcdef0"}]}}'}
    check = preflight.check_placeholders(bag)
    assert check.status == preflight.FAIL and "ml-platform:nodePools.nvidia.capacityReservations[0].id" in check.detail
    real = {"ml-platform:nodePools": '{"nvidia": {"capacityReservations": [{"id": "cr-0a1b2c3d4e5f60718"}]}}'}
    assert preflight.check_placeholders(real).status == preflight.PASS
