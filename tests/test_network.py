"""The network as synthesized: subnets per AZ with their tags, NAT per environment, endpoints, flow logs."""
from __future__ import annotations

import ipaddress

import pytest

SUBNET, NAT, RT = "aws:ec2/subnet:Subnet", "aws:ec2/natGateway:NatGateway", "aws:ec2/routeTable:RouteTable"
EXPECTED = {"dev": (2, 1, True), "staging": (3, 1, True), "prod": (3, 3, True)}  # AZs, NAT gateways, flow logs


def test_subnets_per_az_with_load_balancer_and_discovery_tags(stack):
    azs, _, _ = EXPECTED[stack.result.stack]
    subnets = stack.of_type(SUBNET)
    private = [s for s in subnets if s["inputs"]["tags"]["tier"] == "private"]
    public = [s for s in subnets if s["inputs"]["tags"]["tier"] == "public"]
    assert len(private) == len(public) == azs
    assert len({s["inputs"]["availabilityZone"] for s in private}) == azs
    cluster_name = stack.result.outputs["cluster"]["name"]
    for s in private:
        assert s["inputs"]["tags"]["kubernetes.io/role/internal-elb"] == "1"
        assert s["inputs"]["tags"]["karpenter.sh/discovery"] == cluster_name
        assert "kubernetes.io/role/elb" not in s["inputs"]["tags"]
    for s in public:
        assert s["inputs"]["tags"]["kubernetes.io/role/elb"] == "1"
        assert s["inputs"]["mapPublicIpOnLaunch"] is False
        assert "karpenter.sh/discovery" not in s["inputs"]["tags"]
    vpc = ipaddress.IPv4Network(stack.one("aws:ec2/vpc:Vpc")["inputs"]["cidrBlock"])
    assert all(ipaddress.IPv4Network(s["inputs"]["cidrBlock"]).subnet_of(vpc) for s in subnets)


def test_nat_gateways_per_environment_and_private_routes(stack):
    azs, nat_count, _ = EXPECTED[stack.result.stack]
    nats = stack.of_type(NAT)
    assert len(nats) == nat_count
    private_tables = [r for r in stack.of_type(RT) if "private" in r["name"]]
    assert len(private_tables) == azs
    nat_ids = {n["outputs"]["id"] for n in nats}
    routes = [rt["inputs"]["routes"][0] for rt in private_tables]
    assert all(r["cidrBlock"] == "0.0.0.0/0" and r["natGatewayId"] in nat_ids for r in routes)
    # One NAT per AZ means each private table uses its own NAT.
    assert len({r["natGatewayId"] for r in routes}) == nat_count


def test_default_security_group_is_closed(stack):
    sg = stack.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert sg["inputs"]["ingress"] == [] and sg["inputs"]["egress"] == []


def test_s3_gateway_endpoint_serves_every_private_route_table(stack):
    [endpoint] = [e for e in stack.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") if e["inputs"]["vpcEndpointType"] == "Gateway"]
    private_tables = {r["outputs"]["id"] for r in stack.of_type(RT) if "private" in r["name"]}
    assert endpoint["inputs"]["vpcEndpointType"] == "Gateway"
    assert endpoint["inputs"]["serviceName"] == f"com.amazonaws.{stack.result.outputs['region']}.s3"
    assert set(endpoint["inputs"]["routeTableIds"]) == private_tables


def test_node_logs_reach_cloudwatch_through_an_interface_endpoint_in_every_private_subnet(stack):
    [endpoint] = [e for e in stack.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") if e["inputs"]["serviceName"].endswith(".logs")]
    assert endpoint["inputs"]["vpcEndpointType"] == "Interface"
    # Private DNS makes the shippers' default logs.<region>.amazonaws.com resolve to the endpoint, not the NAT.
    assert endpoint["inputs"]["privateDnsEnabled"] is True
    private = {s["outputs"]["id"] for s in stack.of_type("aws:ec2/subnet:Subnet") if s["inputs"]["tags"].get("tier") == "private"}
    assert set(endpoint["inputs"]["subnetIds"]) == private
    [sg] = [g for g in stack.of_type("aws:ec2/securityGroup:SecurityGroup") if g["outputs"]["id"] in endpoint["inputs"]["securityGroupIds"]]
    assert [(r["fromPort"], r["toPort"], r["cidrBlocks"]) for r in sg["inputs"]["ingress"]] == [(443, 443, [stack.one("aws:ec2/vpc:Vpc")["inputs"]["cidrBlock"]])]
    cost = stack.result.cost
    # Three interface endpoints (CloudWatch Logs, ECR API, ECR registry), each in every private subnet.
    assert cost["fixed"]["vpc-interface-endpoints"]["hourlyUsd"] == pytest.approx(3 * len(private) * 0.01)
    assert any("sent through the CloudWatch Logs interface endpoint" in a for a in cost["assumptions"])


def test_flow_logs_where_config_asks(stack):
    _, _, enabled = EXPECTED[stack.result.stack]
    logs = stack.of_type("aws:ec2/flowLog:FlowLog")
    assert len(logs) == (1 if enabled else 0)
    if enabled:
        assert logs[0]["inputs"]["trafficType"] == "ALL"
        assert logs[0]["inputs"]["vpcId"] == stack.one("aws:ec2/vpc:Vpc")["outputs"]["id"]


@pytest.mark.parametrize("key", ["environment", "project", "owner", "cost-center"])
def test_every_network_resource_with_tags_carries_the_required_ones(stack, key):
    network = stack.one("ml-platform:network:Network")
    children = [r for r in stack.resources if r["parent"] == network["urn"] and "tags" in r["inputs"]]
    assert len(children) > 10
    assert all(r["inputs"]["tags"].get(key) for r in children)
