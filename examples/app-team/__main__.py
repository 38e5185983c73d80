"""An app team's program: reads the platform through StackReference, shows its model endpoints and deploys one model service."""
import pulumi

from model_service import ModelService, check_contract, describe, model_endpoints

config = pulumi.Config()
platform = pulumi.StackReference(config.require("platformStack"))
service = ModelService(
    config.require("name"),
    platform,
    team=config.require("team"),
    image=config.require("image"),
    path=config.require("path"),
)
pulumi.export("url", service.url)

# What the platform serves, and which model versions take the traffic (stable, and a canary when one runs).
endpoints = pulumi.Output.all(platform.require_output("schemaVersion").apply(check_contract), platform.require_output("workloads")).apply(
    lambda v: model_endpoints(v[1])
)
endpoints.apply(lambda e: [pulumi.log.info(line) for line in describe(e)])
pulumi.export("platformModelEndpoints", endpoints)
