//! The config file and the database across restarts: the file seeds the database at
//! every start (its declared objects win), objects created through the API survive a
//! restart, and `manage = "replace"` deletes what the file does not declare.

use super::common::server;
use super::*;

async fn names(s: &TestServer, token: &str) -> Vec<(String, u64)> {
    let d = s.data(token, "{devices{name pollMs}}", json!({})).await;
    d["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or("").to_string(),
                d["pollMs"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_file_seeds_the_database_and_replace_deletes_what_it_does_not_declare() {
    let (s, dir) = start().await;
    let token = s.login("acme", "admin").await;
    sim_device(&s, &token, "from-api", 100).await;
    let steady = s.data(&token, "{devices{id}}", json!({})).await["devices"][0]["id"]
        .as_str()
        .expect("steady")
        .to_string();
    s.data(
        &token,
        "mutation($d: ID!) { updateDevice(id: $d, input: { pollMs: 250 }) { pollMs } }",
        json!({"d": steady}),
    )
    .await;
    let config = s.config.clone();
    s.stop().await.expect("stopped");

    // Merge (the default): the API's device stays; the file's declared device is the
    // file's again.
    let s = server::start_unprepared(config.clone()).await;
    s.wait_ready().await;
    let token = s.login("acme", "admin").await;
    assert_eq!(
        names(&s, &token).await,
        [("steady".to_string(), 20), ("from-api".to_string(), 100)]
    );
    s.stop().await.expect("stopped");

    // Replace: the file is the whole configuration.
    let plant = PLANT.replacen(
        "name = \"acme\"\n",
        "name = \"acme\"\nmanage = \"replace\"\n",
        1,
    );
    let mut replaced = server::config(&plant, dir.path());
    replaced.secret_key = config.secret_key.clone();
    let s = server::start_unprepared(replaced).await;
    s.wait_ready().await;
    let token = s.login("acme", "admin").await;
    assert_eq!(names(&s, &token).await, [("steady".to_string(), 20)]);
    let units = s.data(&token, "{units{name}}", json!({})).await;
    assert_eq!(units["units"], json!([{"name": "boiler-house"}]));
    // The other tenant is untouched.
    let other = s.login("globex", "admin").await;
    assert_eq!(names(&s, &other).await, [("far-away".to_string(), 100)]);
}
