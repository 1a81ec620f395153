//! Bad input to the configuration mutations: each refused with the field at fault,
//! nothing changed; concurrent updates of one device; permissions; the audit record
//! of a change, with its objects before and after and no secret in it.

use super::*;

const UPDATE_DEVICE: &str =
    "mutation($d: ID!, $i: DevicePatch!) { updateDevice(id: $d, input: $i) { name pollMs } }";

#[tokio::test]
async fn bad_input_is_refused_with_the_field_and_changes_nothing() {
    let (s, _dir) = start().await;
    let token = s.login("acme", "admin").await;
    let (device, _) = sim_device(&s, &token, "pump", 100).await;

    // A name taken.
    let r = s
        .gql(
            Some(&token),
            CREATE_DEVICE,
            json!({"i": {"name": "steady", "driver": {"protocol": "sim"}}}),
        )
        .await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
    assert_eq!(paths(&r), ["input.name"], "{r}");
    let r = s
        .gql(
            Some(&token),
            CREATE_TAG,
            json!({"i": {"deviceId": device, "name": "count", "address": "sine"}}),
        )
        .await;
    assert_eq!(paths(&r), ["input.name"], "{r}");
    // An address that does not fit the protocol, a type that does not exist.
    let r = s
        .gql(
            Some(&token),
            CREATE_TAG,
            json!({"i": {"deviceId": device, "name": "t", "address": "hr:100"}}),
        )
        .await;
    assert_eq!(paths(&r), ["input.address"], "{r}");
    let r = s
        .gql(
            Some(&token),
            CREATE_TAG,
            json!({"i": {"deviceId": device, "name": "t", "address": "sine", "dataType": "f128"}}),
        )
        .await;
    assert_eq!(paths(&r), ["input.dataType"], "{r}");
    let modbus = json!({"protocol": "modbus", "host": "127.0.0.1", "port": 1});
    let r = s
        .data(
            &token,
            CREATE_DEVICE,
            json!({"i": {"name": "plc", "enabled": false, "driver": modbus}}),
        )
        .await;
    let plc = r["createDevice"]["id"].as_str().expect("plc").to_string();
    let r = s
        .gql(
            Some(&token),
            CREATE_TAG,
            json!({"i": {"deviceId": plc, "name": "t", "address": "coil:3", "dataType": "f64"}}),
        )
        .await;
    assert_eq!(paths(&r), ["input.address"], "{r}");
    // Driver settings: a wrong type, an unknown key, an unknown protocol.
    for (driver, path) in [
        (
            json!({"protocol": "modbus", "host": "h", "port": "x"}),
            "input.driver.port",
        ),
        (
            json!({"protocol": "modbus", "host": "h", "prot": 1}),
            "input.driver.prot",
        ),
        (json!({"protocol": "canbus"}), "input.driver.protocol"),
    ] {
        let r = s
            .gql(
                Some(&token),
                CREATE_DEVICE,
                json!({"i": {"name": "x", "driver": driver}}),
            )
            .await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
        assert_eq!(paths(&r), [path], "{r}");
    }
    // A poll period below the tenant's minimum (20 ms).
    let r = s
        .gql(
            Some(&token),
            UPDATE_DEVICE,
            json!({"d": device, "i": {"pollMs": 5}}),
        )
        .await;
    assert_eq!(code(&r), "QUOTA_EXCEEDED", "{r}");
    assert_eq!(paths(&r), ["input.pollMs"], "{r}");
    assert_eq!(r["errors"][0]["extensions"]["limit"], "min_poll_ms", "{r}");
    assert_eq!(r["errors"][0]["extensions"]["max"], 20, "{r}");
    // Several faults at once: each one.
    let r = s
        .gql(
            Some(&token),
            CREATE_TAG,
            json!({"i": {"deviceId": device, "name": "", "address": "noise", "scale": 0.0,
                "alarms": [{"name": "h", "type": "high"}]}}),
        )
        .await;
    assert_eq!(paths(&r), ["input.alarms[0]"], "conversion first: {r}");
    let r = s
        .gql(
            Some(&token),
            CREATE_TAG,
            json!({"i": {"deviceId": device, "name": "", "address": "noise", "scale": 0.0}}),
        )
        .await;
    assert_eq!(
        paths(&r),
        ["input.name", "input.address", "input.scale"],
        "{r}"
    );
    // A tag on a device of another tenant, a unit of another tenant: not found.
    let other = s.login("globex", "admin").await;
    let far = s.data(&other, "{devices{id}}", json!({})).await["devices"][0]["id"]
        .as_str()
        .expect("globex device")
        .to_string();
    let r = s
        .gql(
            Some(&token),
            CREATE_TAG,
            json!({"i": {"deviceId": far, "name": "t", "address": "sine"}}),
        )
        .await;
    assert_eq!(code(&r), "NOT_FOUND", "{r}");
    let r = s
        .gql(
            Some(&token),
            UPDATE_DEVICE,
            json!({"d": far, "i": {"pollMs": 500}}),
        )
        .await;
    assert_eq!(code(&r), "NOT_FOUND", "{r}");
    // Nothing of it changed anything.
    let d = s
        .data(&token, "{devices{name pollMs tags{name}}}", json!({}))
        .await;
    assert_eq!(
        d["devices"],
        json!([
            {"name": "steady", "pollMs": 20, "tags": [{"name": "count"}]},
            {"name": "pump", "pollMs": 100, "tags": [{"name": "count"}]},
            {"name": "plc", "pollMs": 1000, "tags": []},
        ])
    );
    let far_devices = s.data(&other, "{devices{pollMs}}", json!({})).await;
    assert_eq!(far_devices["devices"][0]["pollMs"], 100);
}

#[tokio::test]
async fn a_unit_with_devices_is_deleted_only_with_cascade() {
    let (s, _dir) = start().await;
    let token = s.login("acme", "admin").await;
    let unit = s.data(&token, "{units{id}}", json!({})).await["units"][0]["id"]
        .as_str()
        .expect("unit")
        .to_string();
    let r = s
        .gql(
            Some(&token),
            "mutation($u: ID!) { deleteUnit(id: $u) }",
            json!({"u": unit}),
        )
        .await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
    let message = r["errors"][0]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("steady") && message.contains("cascade"),
        "{message}"
    );
    assert_eq!(
        s.data(&token, "{deviceCount}", json!({})).await["deviceCount"],
        1
    );
    let r = s
        .data(
            &token,
            "mutation($u: ID!) { deleteUnit(id: $u, cascade: true) }",
            json!({"u": unit}),
        )
        .await;
    assert_eq!(r["deleteUnit"], true);
    assert_eq!(
        s.data(&token, "{deviceCount}", json!({})).await["deviceCount"],
        0
    );
    assert_eq!(
        s.data(&token, "{units{id}}", json!({})).await["units"],
        json!([])
    );
}

#[tokio::test]
async fn concurrent_updates_of_one_device_never_interleave() {
    let (s, _dir) = start().await;
    let token = s.login("acme", "admin").await;
    let (device, _) = sim_device(&s, &token, "contended", 100).await;
    let update = |poll: u64, name: &'static str| {
        let (s, token, device) = (&s, &token, &device);
        async move {
            s.gql(
                Some(token),
                UPDATE_DEVICE,
                json!({"d": device, "i": {"pollMs": poll, "name": name}}),
            )
            .await
        }
    };
    let (a, b) = tokio::join!(update(200, "contended-a"), update(300, "contended-b"));
    assert!(a["errors"].is_null() && b["errors"].is_null(), "{a} {b}");
    // The store and the running actor agree on whichever came last.
    let d = s
        .data(
            &token,
            "query($d: ID!) { device(id: $d) { name pollMs status { pollGroups { periodMs } } } }",
            json!({"d": device}),
        )
        .await;
    let poll = d["device"]["pollMs"].as_u64().expect("poll");
    let name = d["device"]["name"].as_str().expect("name");
    assert!(
        (poll, name) == (200, "contended-a") || (poll, name) == (300, "contended-b"),
        "{d}"
    );
    assert_eq!(
        d["device"]["status"]["pollGroups"][0]["periodMs"], poll,
        "{d}"
    );
    // The audit log shows them one after the other: the later one's "before" is the
    // earlier one's "after".
    let log = s
        .data(
            &token,
            "{ auditLog(filter: { action: \"Mutation.updateDevice\" }) { records { changes } } }",
            json!({}),
        )
        .await;
    let entries = log["auditLog"]["records"]
        .as_array()
        .expect("entries")
        .clone();
    assert_eq!(entries.len(), 2, "{log}");
    let (later, earlier) = (&entries[0]["changes"][0], &entries[1]["changes"][0]);
    assert_eq!(later["before"], earlier["after"], "{log}");
    assert_eq!(earlier["before"]["poll_ms"], 100, "{log}");
}

#[tokio::test]
async fn changes_are_audited_before_and_after_without_secrets() {
    let (s, _dir) = start().await;
    let token = s.login("acme", "admin").await;
    let mqtt = json!({"protocol": "mqtt", "host": "127.0.0.1", "port": 1, "topics": ["a/#"]});
    let security = json!({"credentials": {"username": "scada", "password": "hunter2-very-secret"}});
    let d = s
        .data(
            &token,
            CREATE_DEVICE,
            json!({"i": {"name": "gw", "enabled": false, "driver": mqtt, "security": security}}),
        )
        .await;
    let gw = d["createDevice"]["id"].as_str().expect("gw").to_string();
    let r = s
        .data(
            &token,
            "mutation($d: ID!) { updateDevice(id: $d, input: { pollMs: 3000, security: { credentials: { username: \"scada\", password: \"***\" } } }) { pollMs security { credentials { password } } } }",
            json!({"d": gw}),
        )
        .await;
    assert_eq!(
        r["updateDevice"]["security"]["credentials"]["password"],
        "***"
    );
    let log = s
        .data(
            &token,
            "{ auditLog(filter: { resourceType: \"device\" }) { records { action resourceId outcome username summary changes } } }",
            json!({}),
        )
        .await;
    let text = log.to_string();
    assert!(
        !text.contains("hunter2"),
        "a secret in the audit log: {text}"
    );
    let entries = log["auditLog"]["records"].as_array().expect("entries");
    let update = &entries[0];
    assert_eq!(update["action"], "Mutation.updateDevice");
    assert_eq!(update["outcome"], "SUCCESS");
    assert_eq!(update["username"], "admin");
    assert_eq!(update["resourceId"], gw.as_str());
    let change = &update["changes"][0];
    assert_eq!(change["kind"], "device");
    assert_eq!(change["op"], "update");
    assert_eq!(change["before"]["poll_ms"], 1000);
    assert_eq!(change["after"]["poll_ms"], 3000);
    assert_eq!(
        change["after"]["security"]["credentials"]["password"],
        "***"
    );
    let create = &entries[1];
    assert_eq!(create["action"], "Mutation.createDevice");
    assert_eq!(
        create["resourceId"],
        gw.as_str(),
        "the created id is the resource"
    );
    assert_eq!(create["changes"][0]["op"], "create");
    assert!(create["changes"][0]["before"].is_null());
    // Operators and viewers cannot configure; their attempts are audited as denied.
    let op = s.login("acme", "operator").await;
    let r = s
        .gql(
            Some(&op),
            "mutation($d: ID!) { deleteDevice(id: $d) }",
            json!({"d": gw}),
        )
        .await;
    assert_eq!(code(&r), "FORBIDDEN", "{r}");
    let r = s.gql(Some(&op), "{ exportConfig }", json!({})).await;
    assert_eq!(code(&r), "FORBIDDEN", "{r}");
    // A tag the driver generates is the driver's to change.
    let d = s
        .data(
            &token,
            CREATE_DEVICE,
            json!({"i": {"name": "gen", "driver": {"protocol": "sim", "generated_tags": 1}}}),
        )
        .await;
    let gen_device = d["createDevice"]["id"].as_str().expect("gen").to_string();
    let tags = s
        .data(
            &token,
            "query($d: ID!) { tags(deviceId: $d) { id name } }",
            json!({"d": gen_device}),
        )
        .await;
    let generated = tags["tags"][0]["id"]
        .as_str()
        .expect("generated")
        .to_string();
    let r = s
        .gql(
            Some(&token),
            "mutation($t: ID!) { deleteTag(id: $t) }",
            json!({"t": generated}),
        )
        .await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("generated_tags"),
        "{r}"
    );
}
