"""The ModelDeployment resource: typed spec and status, parsing and validation."""

from tensorgate.api.spec import (
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    ModelDeploymentSpec,
    parse_spec,
)

__all__ = ["GROUP", "KIND", "PLURAL", "VERSION", "ModelDeploymentSpec", "parse_spec"]
