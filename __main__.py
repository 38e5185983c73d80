"""Entry point the Pulumi language host runs (and the offline synth runs the same way)."""
from infra import config, platform

platform.build(config.load())
