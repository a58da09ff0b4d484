"""What registry requests mean (pipeline/identities/requests.py), with plain data."""

from __future__ import annotations

from millrace.pipeline.identities import requests as rq
from millrace.pipeline.identities.resources import ResourceDefinition
from millrace.pipeline.telemetry_columns import samples_of

T0 = 1_760_000_000_000_000
S = 1_000_000


def test_created_with_a_credential_is_provisioned_and_has_no_window() -> None:
    cred = rq.credential_attrs("token", "argon2$x", T0, 3600)
    assert cred == {
        "auth_type": "token",
        "credential_hash": "argon2$x",
        "credential_expires_us": str(T0 + 3600 * S),
    }
    assert rq.creation_attrs({"name": "n"}, T0, 60, 30, cred) == {
        "name": "n",
        "inactivity_timeout_s": "30",
        **cred,
        "status": "provisioned",
    }
    assert rq.creation_attrs({}, T0, 60, None, None) == {"provision_until_us": str(T0 + 60 * S)}
    assert rq.credential_attrs("certificate", "", T0, None) == {
        "auth_type": "certificate",
        "credential_hash": "-",
    }


def test_update_attrs() -> None:
    assert rq.update_attrs({"a": "1"}, ["b", "c"], "reprovision", T0, None, 5) == {
        "a": "1",
        "unset": "b,c",
        "status": "reprovision",
        "inactivity_timeout_s": "5",
    }


def test_a_state_write_names_the_first_bad_resource() -> None:
    defs = {
        "sp": ResourceDefinition.model_validate({"settable": True, "format": "number"}),
        "mode": ResourceDefinition.model_validate(
            {"settable": True, "sync": False, "format": "string"}
        ),
        "ro": ResourceDefinition.model_validate({}),
    }
    assert rq.state_set_problem(defs, {}) == ("body", "give at least one resource")
    assert rq.state_set_problem(defs, {"nope": 1}) is not None
    assert rq.state_set_problem(defs, {"ro": 1}) == ("ro", "resource is not settable")
    bad = rq.state_set_problem(defs, {"sp": "warm"})
    assert bad is not None and bad[0] == "sp"
    assert rq.state_set_problem(defs, {"sp": 21, "mode": "auto"}) is None

    plan = rq.plan_state_set("d", {"sp": 21, "mode": "auto"}, defs, T0, "op", 30, "ev1")
    assert plan.unsynced == {"mode": "auto"}
    # sync off: set and reported change together, at the write's time
    assert plan.reported is not None and plan.acknowledged is not None
    assert (plan.reported["identity"], plan.reported["source"]) == ("d", "state")
    assert plan.reported["received_us"] == T0
    rows = samples_of(plan.reported)
    assert [(x["ts_us"], x["values"]) for x in rows] == [(T0, {"mode": "auto"})]
    ack = plan.acknowledged
    assert (ack["identity"], ack["type"], ack["ts_us"], ack["actor"]) == (
        "d",
        "STATE_ACKNOWLEDGED",
        T0,
        "op",
    )
    assert ack["state"] == {"mode": '"auto"'}
    synced = rq.plan_state_set("d", {"sp": 21}, defs, T0, "op", 30, "ev1")
    assert synced.reported is None and synced.acknowledged is None
    (cmd,) = plan.commands
    assert {k: v for k, v in cmd.items() if k != "command_id"} == {
        "identity": "d",
        "resource": "sp",
        "value": 21,
        "ts_us": T0,
        "issued_by": "op",
        "expires_us": T0 + 30 * S,
        "correlation_id": "ev1",
    }


def test_a_locked_identity_refuses_state_writes() -> None:
    assert rq.locked_refusal({"identity": "d", "status": "locked"}) == "identity 'd' is locked"
    assert rq.locked_refusal({"identity": "d", "status": "provisioned"}) is None
