"""Registry settings of a deployment: identity format, provisioning, timeouts.

They live in the ``identities:`` section of the millrace config file (they are
product-wide policy, like Device2's product settings), not in events.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from millrace.pipeline.identities.formats import IdentityFormat

AuthType = Literal["token", "password", "certificate"]
_DEFAULT_AUTH: tuple[AuthType, ...] = ("token", "password")


class ProvisioningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="devices may provision themselves (the switch)")
    ip_allowlist: list[str] = Field(
        default_factory=list, description="addresses/CIDRs allowed to provision; empty: any"
    )
    presented_identity: bool = Field(
        False, description="a device may provision an identity no operator created"
    )
    generate_identity: bool = Field(
        False, description="a device may ask for a new identity in the configured format"
    )
    auth_types: list[AuthType] = Field(
        default_factory=lambda: list(_DEFAULT_AUTH), description="credentials devices may use"
    )
    credential_ttl_s: int | None = Field(
        None, ge=60, description="credentials expire after this; the device must reprovision"
    )
    window_s: int | None = Field(
        None, ge=1, description="default provisioning window of a created identity"
    )
    cn_header: str = Field(
        "x-ssl-client-cn",
        description="header in which a trusted TLS front end passes a verified client "
        "certificate's CN (auth type certificate)",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list, description="front ends whose cn_header is believed"
    )

    @field_validator("cn_header")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower()


class RegistryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: IdentityFormat = Field(default_factory=IdentityFormat)
    provisioning: ProvisioningConfig = Field(default_factory=ProvisioningConfig)
    inactivity_timeout_s: int = Field(
        300, ge=1, description="no telemetry for this long: offline (per identity overridable)"
    )
    command_timeout_s: int = Field(
        300, ge=1, description="a set value not reported back in time: STATE_TIMED_OUT"
    )
    require_registered: bool = Field(
        False, description="HTTP ingest refuses identities that are not in the registry"
    )
