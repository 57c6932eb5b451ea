//! The OpenAPI document and the client catalogue against what the server serves.

#![allow(clippy::unwrap_used)]

/// The document in the repository is the one the server serves: regenerate it with
/// `IRONHORN_WRITE_OPENAPI=1 cargo test -p ironhorn-manager openapi`.
#[test]
fn the_openapi_document_in_the_repository_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../api/openapi.json");
    let generated = super::openapi_json() + "\n";
    if std::env::var_os("IRONHORN_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("writing api/openapi.json");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "api/openapi.json is out of date: regenerate it with IRONHORN_WRITE_OPENAPI=1 cargo test -p ironhorn-manager openapi"
    );
}

/// Every request of the client catalogue names an operation the server documents (and
/// so serves: the schema test checks that).
#[test]
fn the_client_catalogue_matches_the_served_paths() {
    use ironhorn_api::manager_api as api;
    use ironhorn_api::node::CreateSnapshot;
    use ironhorn_api::rest::*;
    use ironhorn_api::Method;

    let doc: serde_json::Value = serde_json::from_str(&super::openapi_json()).unwrap();
    let size = || SizeInput::Bytes(1);
    let requests: Vec<(Method, String)> = vec![
        m(api::list_volumes()),
        m(api::get_volume("v")),
        m(api::create_volume(&CreateVolume {
            name: "v".into(),
            size: size(),
            number_of_replicas: None,
            stale_replica_timeout: None,
            frontend: None,
            data_locality: None,
            node_selector: vec![],
            disk_selector: vec![],
            labels: Default::default(),
            from_backup: None,
            standby: None,
            data_source: None,
        })),
        m(api::delete_volume("v")),
        m(api::attach("v", &AttachRequest::default())),
        m(api::detach("v", &DetachRequest::default())),
        m(api::trim("v")),
        m(api::salvage("v", &SalvageRequest::default())),
        m(api::expand("v", &ExpandRequest { size: size() })),
        m(api::snapshots("v")),
        m(api::create_snapshot(
            "v",
            &CreateSnapshot {
                name: "s".into(),
                labels: Default::default(),
            },
        )),
        m(api::delete_snapshot("v", "s")),
        m(api::revert_snapshot("v", "s")),
        m(api::purge("v")),
        m(api::list_nodes()),
        m(api::get_node("n")),
        m(api::register_node(&RegisterNode {
            name: "n".into(),
            address: "a:1".into(),
            default_disk_path: None,
        })),
        m(api::update_node("n", &NodeUpdate::default())),
        m(api::delete_node("n")),
        m(api::add_disk(
            "n",
            &AddDisk {
                name: "d".into(),
                path: "/d".into(),
                allow_scheduling: true,
                storage_reserved: None,
                tags: vec![],
            },
        )),
        m(api::update_disk("n", "d", &DiskUpdate::default())),
        m(api::remove_disk("n", "d")),
        m(api::list_orphans()),
        m(api::get_orphan("o")),
        m(api::delete_orphan("o")),
        m(api::list_settings()),
        m(api::get_setting("k")),
        m(api::set_setting("k", "v")),
        m(api::create_backup("v", &Default::default())),
        m(api::activate("v")),
        m(api::list_backup_targets()),
        m(api::get_backup_target("t")),
        m(api::put_backup_target("t", &Default::default())),
        m(api::delete_backup_target("t")),
        m(api::list_secrets()),
        m(api::put_secret("s", &Default::default())),
        m(api::delete_secret("s")),
        m(api::list_backup_volumes(Some("t"))),
        m(api::get_backup_volume("v", None)),
        m(api::delete_backup_volume("v", None)),
        m(api::list_backups("v", Some("t"), Some(5), Some("x|y"))),
        m(api::get_backup("v", "b", None)),
        m(api::delete_backup("v", "b", Some("t"))),
        m(api::list_recurring_jobs()),
        m(api::get_recurring_job("j")),
        m(api::create_recurring_job(&job())),
        m(api::update_recurring_job(&job())),
        m(api::delete_recurring_job("j")),
        m(api::run_recurring_job("j")),
        m(api::recurring_job_runs("j")),
        m(api::volume_recurring_runs("v")),
        m(api::set_volume_labels("v", &VolumeLabels::default())),
        m(api::login(&ironhorn_api::auth::Login {
            user: "u".into(),
            password: "p".into(),
        })),
        m(api::logout()),
        m(api::me()),
        m(api::list_users()),
        m(api::create_user(&ironhorn_api::auth::CreateUser {
            name: "u".into(),
            role: ironhorn_api::auth::Role::Viewer,
            password: None,
        })),
        m(api::delete_user("u")),
        m(api::list_tokens()),
        m(api::create_token(&Default::default())),
        m(api::revoke_token("t")),
        m(api::audit(Some(5))),
        m(api::leader()),
        (Method::Get, api::EVENTS_PATH.to_string()),
    ];
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = 0;
    for (_, operations) in paths {
        documented += operations.as_object().unwrap().len();
    }
    assert_eq!(
        requests.len(),
        documented,
        "one request per documented operation"
    );
    for (method, path) in requests {
        let found = paths.iter().any(|(template, operations)| {
            matches_template(template, &path)
                && operations.get(method.as_str().to_lowercase()).is_some()
        });
        assert!(
            found,
            "{} {path} is not in the OpenAPI document",
            method.as_str()
        );
    }

    fn job() -> ironhorn_api::recurring::RecurringJobSpec {
        ironhorn_api::recurring::RecurringJobSpec {
            name: "j".into(),
            task: ironhorn_api::recurring::RecurringTask::Snapshot,
            cron: "@daily".into(),
            retain: 1,
            concurrency: 1,
            groups: vec![],
            labels: Default::default(),
        }
    }
    fn m<R: serde::de::DeserializeOwned>(r: ironhorn_api::Request<R>) -> (Method, String) {
        (r.method, r.path)
    }
    fn matches_template(template: &str, path: &str) -> bool {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let (t, p): (Vec<&str>, Vec<&str>) =
            (template.split('/').collect(), path.split('/').collect());
        t.len() == p.len()
            && t.iter()
                .zip(&p)
                .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}')))
    }
}

/// Every operation the API documents needs a signed-in user (or, to register a node, the
/// cluster secret): none is public, reads need a viewer, changes at least an operator.
#[test]
fn every_documented_operation_needs_credentials() {
    use ironhorn_auth::{requirement, Requirement, Role};
    let doc: serde_json::Value = serde_json::from_str(&super::openapi_json()).unwrap();
    let mut checked = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        // A template's parameters stand for any segment.
        let concrete = path.replace('{', "x").replace('}', "");
        for method in operations.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let needs = requirement(&method, &concrete);
            let expected_least = if method == "GET" {
                Role::Viewer
            } else {
                Role::Operator
            };
            // Signing in and out, and one's own tokens, are for every signed-in user.
            let own = matches!(
                path.as_str(),
                "/v1/logout" | "/v1/tokens" | "/v1/tokens/{id}"
            );
            match needs {
                Requirement::User(role) if own => assert_eq!(role, Role::Viewer),
                Requirement::User(role) => assert!(role >= expected_least, "{method} {path}"),
                Requirement::Node => assert_eq!(path, "/v1/nodes/register"),
                Requirement::Public => {
                    assert_eq!(path, "/v1/login", "{method} {path} would be public")
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "{checked} operations");
}
