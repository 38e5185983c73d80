"""An app team's program: reads the platform through StackReference and deploys one model service."""
import pulumi

from model_service import ModelService

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
