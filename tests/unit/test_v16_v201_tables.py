"""The 1.6 <-> 2.0.1 mapping tables hold only values the OCPP schemas define, and state each fact once."""

from __future__ import annotations

from typing import Any

import pytest
from ocpp.v201.enums import StandardizedUnitsOfMeasureType

import mappings
from adapters.v16_v201 import tables
from gateway import schemas
from gateway.ocppj import Version

V16, V201 = Version.V16, Version.V201


def schema_enum(version: Version, action: str, path: str, response: bool = False) -> set[str]:
    """The enum at a dotted property path of a message schema (arrays and $refs are walked through)."""
    schema = schemas.load_schema(version, action, response)
    defs = schema.get("definitions", {})
    node: dict[str, Any] = schema
    for part in path.split("."):
        while True:
            if "$ref" in node:
                node = defs[node["$ref"].rsplit("/", 1)[-1]]
            elif node.get("type") == "array":
                node = node["items"]
            else:
                break
        node = node["properties"][part]
    while "$ref" in node or node.get("type") == "array":
        node = defs[node["$ref"].rsplit("/", 1)[-1]] if "$ref" in node else node["items"]
    return set(node["enum"])


UNITS_201 = {u.value for u in StandardizedUnitsOfMeasureType}

# table -> column -> the schema enum its values must belong to
COLUMNS: dict[str, dict[str, set[str]]] = {
    "stop_reasons": {
        "v16": schema_enum(V16, "StopTransaction", "reason"),
        "v201": schema_enum(V201, "TransactionEvent", "transactionInfo.stoppedReason"),
        "trigger_reason": schema_enum(V201, "TransactionEvent", "triggerReason"),
    },
    "authorization_status": {
        "v16": schema_enum(V16, "Authorize", "idTagInfo.status", response=True),
        "v201": schema_enum(V201, "Authorize", "idTokenInfo.status", response=True),
    },
    "connector_status": {
        "v16": schema_enum(V16, "StatusNotification", "status"),
        "v201": schema_enum(V201, "StatusNotification", "connectorStatus"),
        "charging_state": schema_enum(V201, "TransactionEvent", "transactionInfo.chargingState") | {""},
    },
    "units": {
        # StopTransaction's unit enum lacks Hertz; MeterValues' is the superset.
        "v16": schema_enum(V16, "MeterValues", "meterValue.sampledValue.unit"),
        "v201": UNITS_201,
    },
    "firmware_status": {
        "v16": schema_enum(V16, "FirmwareStatusNotification", "status"),
        "v201": schema_enum(V201, "FirmwareStatusNotification", "status"),
    },
    "log_status": {
        "v16": schema_enum(V16, "DiagnosticsStatusNotification", "status"),
        "v201": schema_enum(V201, "LogStatusNotification", "status"),
    },
    "reset_type": {"v16": schema_enum(V16, "Reset", "type"), "v201": schema_enum(V201, "Reset", "type")},
    "availability_type": {
        "v16": schema_enum(V16, "ChangeAvailability", "type"),
        "v201": schema_enum(V201, "ChangeAvailability", "operationalStatus"),
    },
    "trigger_message": {
        "v16": schema_enum(V16, "TriggerMessage", "requestedMessage")
        | schema_enum(V16, "ExtendedTriggerMessage", "requestedMessage"),
        "v201": schema_enum(V201, "TriggerMessage", "requestedMessage"),
        "v16_action": {"TriggerMessage", "ExtendedTriggerMessage"},
    },
    "charging_profile_purpose": {
        "v16": schema_enum(V16, "SetChargingProfile", "csChargingProfiles.chargingProfilePurpose"),
        "v201": schema_enum(V201, "SetChargingProfile", "chargingProfile.chargingProfilePurpose"),
    },
    "reading_context_trigger": {
        "v16": schema_enum(V16, "MeterValues", "meterValue.sampledValue.context"),
        "v201": schema_enum(V201, "TransactionEvent", "triggerReason"),
    },
    "measurands": {
        "v16": schema_enum(V16, "MeterValues", "meterValue.sampledValue.measurand"),
        "v201": schema_enum(V201, "MeterValues", "meterValue.sampledValue.measurand"),
    },
    "certificate_type": {
        "v16": schema_enum(V16, "InstallCertificate", "certificateType"),
        "v201": schema_enum(V201, "InstallCertificate", "certificateType"),
    },
}

TABLE_CELLS = [
    pytest.param(table, column, row, id=f"{table}:{row.index}:{column}")
    for table, columns in COLUMNS.items()
    for row in mappings.rows(table)
    for column in columns
]


@pytest.mark.parametrize(("table", "column", "row"), TABLE_CELLS)
def test_every_enum_cell_is_a_schema_value(table: str, column: str, row: mappings.Row) -> None:
    """Each enum cell of each table is a value of the schema enum that column stands for."""
    assert row[column] in COLUMNS[table][column], f"{row.file} row {row.index}: {column}={row[column]!r}"


@pytest.mark.parametrize("table", [*tables.ENUM_TABLES, "response_status", "config_keys", "certificate_type"])
def test_every_table_is_documented(table: str) -> None:
    """Each table file starts with a description and uses only the directions the loader knows."""
    import yaml

    doc = yaml.safe_load((mappings.BUILTIN_DIR / f"{table}.yaml").read_text(encoding="utf-8"))
    assert isinstance(doc.get("description"), str) and doc["description"].strip()
    for row in mappings.rows(table):
        assert row.get("direction", "both") in ("both", "to_v16", "to_v201")


def test_enum_tables_are_listed() -> None:
    """Every v16/v201 enum table shipped is checked against the schemas here."""
    assert set(tables.ENUM_TABLES) <= set(COLUMNS)


@pytest.mark.parametrize("table", tables.ENUM_TABLES)
def test_each_value_is_stated_once_per_direction(table: str) -> None:
    """Going to 2.0.1 each 1.6 value has one row; going to 1.6 a one-way row never shadows a two-way one."""
    forward: list[Any] = []
    both_reverse: set[Any] = set()
    one_way_reverse: list[Any] = []
    for row in mappings.rows(table):
        direction = row.get("direction", "both")
        reverse_key = (row["v201"], row["multiplier"]) if table == "units" else row["v201"]
        if direction in ("both", "to_v201"):
            forward.append(row["v16"])
        if direction == "both":
            both_reverse.add(reverse_key)
        if direction == "to_v16":
            one_way_reverse.append(reverse_key)
    assert len(forward) == len(set(forward))
    assert len(one_way_reverse) == len(set(one_way_reverse))
    assert not both_reverse & set(one_way_reverse)


@pytest.mark.parametrize("table", tables.ENUM_TABLES)
def test_every_v16_value_has_a_v201_translation(table: str) -> None:
    """Going to 2.0.1, every 1.6 value the table's v16 column may hold translates (nothing is left unmapped)."""
    if table in ("measurands",):
        pytest.skip("1.6 Temperature and RPM have no 2.0.1 measurand; such samples are dropped by design")
    column = COLUMNS[table]["v16"]
    if table == "trigger_message":
        column = schema_enum(V16, "TriggerMessage", "requestedMessage")
    if table == "units":
        column = schema_enum(V16, "MeterValues", "meterValue.sampledValue.unit")
    missing = sorted(v for v in column if tables.to_v201_row(table, v) is None)
    assert not missing


def test_response_statuses_are_schema_values() -> None:
    """Each response_status row names real actions and statuses of their response schemas."""
    for row in mappings.rows("response_status"):
        v16_path = "status"
        v201_path = "setVariableResult.attributeStatus" if row["v201_message"] == "SetVariables" else "status"
        assert row["v16"] in schema_enum(V16, row["message"], v16_path, response=True), row
        assert row["v201"] in schema_enum(V201, row["v201_message"], v201_path, response=True), row


def test_config_keys_fit_the_schemas() -> None:
    """Config key rows: 1.6 keys fit CiString50, variables fit the device model and use real data types."""
    data_types = schema_enum(V201, "NotifyReport", "reportData.variableCharacteristics.dataType")
    keys: set[str] = set()
    variables: set[tuple[str, str, str | None]] = set()
    for row in mappings.rows("config_keys"):
        assert len(row["v16"]) <= 50 and len(row["component"]) <= 50 and len(row["variable"]) <= 50
        assert row.get("data_type", "string") in data_types, row
        assert row.get("gateway_managed", False) in (True, False), row
        assert row["v16"] not in keys, f"duplicate key {row['v16']}"
        var = (row["component"], row["variable"], row.get("instance"))
        assert var not in variables, f"duplicate variable {var}"
        keys.add(row["v16"])
        variables.add(var)


def test_config_keys_cover_the_standard_16_keys() -> None:
    """Every standard 1.6 configuration key (core, local list, reservation, smart charging) has a row."""
    standard = {
        "AllowOfflineTxForUnknownId", "AuthorizationCacheEnabled", "AuthorizeRemoteTxRequests", "BlinkRepeat",
        "ClockAlignedDataInterval", "ConnectionTimeOut", "ConnectorPhaseRotation", "ConnectorPhaseRotationMaxLength",
        "GetConfigurationMaxKeys", "HeartbeatInterval", "LightIntensity", "LocalAuthorizeOffline",
        "LocalPreAuthorize", "MaxEnergyOnInvalidId", "MeterValuesAlignedData", "MeterValuesAlignedDataMaxLength",
        "MeterValuesSampledData", "MeterValuesSampledDataMaxLength", "MeterValueSampleInterval",
        "MinimumStatusDuration", "NumberOfConnectors", "ResetRetries", "StopTransactionOnEVSideDisconnect",
        "StopTransactionOnInvalidId", "StopTxnAlignedData", "StopTxnAlignedDataMaxLength", "StopTxnSampledData",
        "StopTxnSampledDataMaxLength", "SupportedFeatureProfiles", "SupportedFeatureProfilesMaxLength",
        "TransactionMessageAttempts", "TransactionMessageRetryInterval", "UnlockConnectorOnEVSideDisconnect",
        "WebSocketPingInterval", "LocalAuthListEnabled", "LocalAuthListMaxLength", "SendLocalListMaxLength",
        "ReserveConnectorZeroSupported", "ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit",
        "ChargingScheduleMaxPeriods", "ConnectorSwitch3to1PhaseSupported", "MaxChargingProfilesInstalled",
    }  # fmt: skip
    assert standard <= {row["v16"] for row in mappings.rows("config_keys")}


@pytest.mark.parametrize(
    ("lookup", "expected"),
    [
        (lambda: tables.unit_to_v16("Wh", 3), "kWh"),
        (lambda: tables.unit_to_v16("kWh", 0), "kWh"),
        (lambda: tables.unit_to_v16("Wh", 6), None),
        (lambda: tables.unit_to_v201("Celcius"), ("Celsius", 0)),
        (lambda: tables.to_v16("stop_reasons", "MasterPass"), "Local"),
        (lambda: tables.to_v16("stop_reasons", "ImmediateReset"), "HardReset"),
        (lambda: tables.to_v16("connector_status", "Occupied"), "Preparing"),
        (lambda: tables.to_v16("reset_type", "OnIdle"), "Soft"),
        (lambda: tables.to_v201("reset_type", "Soft"), "Immediate"),
        (lambda: tables.status_to_v16("UnlockConnector", "OngoingAuthorizedTransaction"), "UnlockFailed"),
        (lambda: tables.status_to_v201("SendLocalList", "NotSupported"), "Failed"),
        (lambda: tables.to_v16_row("trigger_message", "SignChargingStationCertificate")["v16_action"],  # type: ignore[index]
         "ExtendedTriggerMessage"),
    ],
)  # fmt: skip
def test_lookups_both_directions(lookup: Any, expected: Any) -> None:
    """The typed views answer both directions, honouring one-way rows (the reverse translator relies on them)."""
    assert lookup() == expected


def test_config_keys_both_directions() -> None:
    """A key maps to its variable and back; unknown keys live in the legacy component under their own name."""
    keys = tables.ConfigKeys.load()
    var = keys.for_key("TransactionMessageAttempts")
    assert (var.component, var.variable, var.instance) == ("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent")
    assert keys.for_variable("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent") == var
    assert keys.for_variable("OCPPCommCtrlr", "MessageAttempts", None) is None
    vendor = keys.for_key("AcmeThing")
    assert (vendor.component, vendor.variable) == (tables.LEGACY_COMPONENT, "AcmeThing")
    assert keys.for_variable(tables.LEGACY_COMPONENT, "AcmeThing", None) == vendor


def test_operator_rows_override_builtin_ones(tmp_path: Any) -> None:
    """An operator table in an extra mapping directory overrides a built-in row, in both directions."""
    (tmp_path / "stop_reasons.yaml").write_text(
        "description: site policy\nrows:\n"
        "  - {v16: UnlockCommand, v201: Local, trigger_reason: UnlockCommand, direction: to_v201}\n"
        "  - {v16: Other, v201: MasterPass, trigger_reason: StopAuthorized, direction: to_v16}\n"
    )
    try:
        mappings.set_extra_dirs([tmp_path])
        assert tables.to_v201("stop_reasons", "UnlockCommand") == "Local"
        assert tables.to_v16("stop_reasons", "MasterPass") == "Other"
        assert tables.to_v201("stop_reasons", "Remote") == "Remote"
    finally:
        mappings.set_extra_dirs([])
    assert tables.to_v201("stop_reasons", "UnlockCommand") == "Other"
