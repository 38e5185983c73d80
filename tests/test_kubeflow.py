"""Kubeflow Pipelines: settings, the objects rendered from the vendored manifests, storage, access and isolation."""
from __future__ import annotations

import pytest

from tests.test_config import error_of


def _enable(raw: dict, **pipelines) -> None:
    raw["kubeflow"] = {"enabled": True, "pipelines": {"enabled": True, **pipelines}}


@pytest.mark.parametrize(
    "pipelines, expected",
    [
        ({}, "ml-platform:kubeflow.pipelines.artifacts is required when pipelines are enabled"),
        ({"artifacts": {"bucketName": "Bad_Name"}}, "ml-platform:kubeflow.pipelines.artifacts.bucketName: \"Bad_Name\" is not allowed: an S3 bucket name is 3 to 63"),
        ({"artifacts": {"bucketName": "a.b.c"}}, "bucketName: \"a.b.c\" is not allowed: use a bucket name without dots"),
        ({"artifacts": {"bucketName": "x-s3alias"}}, "does not end with '-s3alias'"),
        (
            {"artifacts": {"bucketName": "kfp-art"}, "teams": {"nlp": {"pipelineRoot": "s3://other/nlp/x"}}},
            "ml-platform:kubeflow.pipelines.teams.nlp.pipelineRoot 's3://other/nlp/x' is outside the team's prefix s3://kfp-art/nlp/",
        ),
        (
            {"artifacts": {"bucketName": "kfp-art"}, "teams": {"nlp": {"pipelineRoot": "s3://kfp-art/nlp/../cv/"}}},
            "teams.nlp.pipelineRoot 's3://kfp-art/nlp/../cv/' is outside the team's prefix",
        ),
        ({"artifacts": {"bucketName": "kfp-art"}, "teams": {"ghost": {}}}, "ml-platform:kubeflow.pipelines.teams.ghost: 'ghost' is not one of the teams"),
        ({"artifacts": {"bucketName": "kfp-art"}, "ui": {"mode": "oidc"}}, "ml-platform:kubeflow.pipelines.ui.issuer is required with mode oidc"),
        (
            {"artifacts": {"bucketName": "kfp-art"}, "ui": {"mode": "oidc", "issuer": "https://id.example"}},
            "ml-platform:kubeflow.pipelines.ui.audiences is required with mode oidc",
        ),
    ],
)
def test_bad_pipelines_settings_name_the_key(pipelines, expected):
    assert expected in error_of(lambda raw: _enable(raw, **pipelines))
