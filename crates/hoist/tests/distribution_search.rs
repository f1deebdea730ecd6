//! `GET /distribution/{name}/json` and `GET /images/search` through real clients: docker-py
//! (`inspect_distribution`, `search`), dockerode (`getImage().distribution()`,
//! `searchImages`) and the docker CLI (`docker search`).
//!
//! Distribution is checked against the real registry (and one behind the testkit token
//! server), with the generator's digests as truth. Search is checked against the testkit
//! `SearchIndex`, a stand-in for Docker Hub's v1 search API, because no registry on this
//! machine implements v1 search; the real registry is used for the answer moby gives when an
//! index has no search API.

mod foundation_support;

use foundation_support::*;
use hoist_testkit::archive::{ArchiveBuilder, ArchiveFormat};
use hoist_testkit::docker::DockerCli;
use hoist_testkit::image::{Flavor, ImageBuilder, IndexBuilder, LayerSpec, Platform};
use hoist_testkit::registry::{RegistryOptions, TestRegistry};
use hoist_testkit::search_index::{IndexedRepository, SearchIndex, SearchIndexOptions};
use hoist_testkit::token_server::{TokenServer, TokenServerOptions};
use serde_json::json;

fn run_py(docker: &DockerCli, script: &str) -> serde_json::Value {
    docker.docker_py_json(script, &[])
}

fn run_js(docker: &DockerCli, script: &str) -> serde_json::Value {
    docker.dockerode_json(script)
}

/// docker-py helper printing `[status, body-or-message]` for one call.
const PY_CALL: &str = r#"
def call(f):
    try:
        return [200, f()]
    except docker.errors.APIError as e:
        return [e.status_code, e.explanation]
"#;

fn descriptor(media_type: &str, digest: &str, size: u64) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": digest, "size": size})
}

#[test]
fn docker_py_inspects_indexes_and_manifests_without_storing_anything() {
    let registry = TestRegistry::shared();
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let repo = unique_repo("dist/py");
    let index = IndexBuilder::new(Flavor::Oci)
        .platform("linux/amd64", &[LayerSpec::single(2_000)])
        .platform("linux/arm64/v8", &[LayerSpec::single(3_000)])
        .with_attestations()
        .build();
    registry.push_index(&repo, "multi", &index);
    let list = IndexBuilder::new(Flavor::Docker)
        .platform("linux/amd64", &[LayerSpec::single(1_000)])
        .platform("linux/arm/v7", &[LayerSpec::single(1_000)])
        .build();
    registry.push_index(&repo, "list", &list);
    let docker_image = ImageBuilder::new(Flavor::Docker)
        .platform(Platform::new("linux", "arm", Some("v7")))
        .layer(LayerSpec::single(1_500))
        .build();
    registry.push_image(&repo, "docker", &docker_image);
    let oci_image = ImageBuilder::new(Flavor::Oci)
        .layer(LayerSpec::single(1_500))
        .build();
    registry.push_image(&repo, "latest", &oci_image);

    let name = format!("{}/{repo}", registry.host());
    let result = run_py(
        &docker,
        &format!(
            r#"{PY_CALL}
name = "{name}"
inspect = client.api.inspect_distribution
print(json.dumps({{
    "multi": call(lambda: inspect(name + ":multi")),
    "list": call(lambda: inspect(name + ":list")),
    "docker": call(lambda: inspect(name + ":docker")),
    "bare": call(lambda: inspect(name)),
    "by_digest": call(lambda: inspect(name + "@{digest}")),
    "no_tag": call(lambda: inspect(name + ":nope")),
    "no_repo": call(lambda: inspect("{host}/{repo}-missing:1")),
    "image_id": call(lambda: inspect("{hex}")),
    "images": client.api.images(all=True),
}}))
"#,
            digest = index.digest(),
            host = registry.host(),
            hex = "a".repeat(64),
        ),
    );
    let unknown = json!({"architecture": "unknown", "os": "unknown"});
    assert_eq!(
        result["multi"],
        json!([200, {
            "Descriptor": descriptor(index.media_type(), index.digest(), index.size()),
            "Platforms": [
                {"architecture": "amd64", "os": "linux"},
                {"architecture": "arm64", "os": "linux", "variant": "v8"},
                unknown, unknown,
            ],
        }])
    );
    assert_eq!(result["by_digest"], result["multi"]);
    assert_eq!(
        result["list"],
        json!([200, {
            "Descriptor": descriptor(list.media_type(), list.digest(), list.size()),
            "Platforms": [
                {"architecture": "amd64", "os": "linux"},
                {"architecture": "arm", "os": "linux", "variant": "v7"},
            ],
        }])
    );
    // A Docker schema 2 manifest: the platform its config declares.
    assert_eq!(
        result["docker"],
        json!([200, {
            "Descriptor": descriptor(docker_image.media_type(), docker_image.digest(), docker_image.size()),
            "Platforms": [{"architecture": "arm", "os": "linux", "variant": "v7"}],
        }])
    );
    // A bare name is its `latest` tag; moby reports no platform for an OCI manifest.
    assert_eq!(
        result["bare"],
        json!([200, {
            "Descriptor": descriptor(oci_image.media_type(), oci_image.digest(), oci_image.size()),
            "Platforms": null,
        }])
    );
    // The registry's own words, with the status distribution gives its error code.
    assert_eq!(
        result["no_tag"],
        json!([404, "manifest unknown: manifest unknown"])
    );
    // distribution says the same of a repository it does not have.
    assert_eq!(
        result["no_repo"],
        json!([404, "manifest unknown: manifest unknown"])
    );
    assert_eq!(
        result["image_id"],
        json!([500, "no manifest found for full image ID"])
    );
    assert_eq!(result["images"], json!([]), "nothing may be stored");
    assert!(stored_blobs(&daemon.data_root()).is_empty());
}

#[test]
fn a_token_registry_refuses_wrong_credentials_and_answers_right_ones() {
    let tokens = TokenServer::start(TokenServerOptions::default());
    tokens.add_user("dora", "s3cret", &[("*", &["pull", "push"])]);
    let registry = TestRegistry::start(RegistryOptions {
        auth: tokens.registry_auth(),
    });
    let daemon = start_daemon();
    let host = registry.host();
    let name = format!("{host}/{}:1", unique_repo("dist/token"));
    let image = ImageBuilder::new(Flavor::Docker)
        .layer(LayerSpec::single(4_000))
        .build();
    let pusher = DockerCli::new(&daemon.socket()).with_auth(&host, "dora", "s3cret");
    let scratch = Scratch::new();
    let archive = scratch.archive(
        "image.tar",
        &ArchiveBuilder::new(ArchiveFormat::DockerLegacy).image(&image, &[&name]),
    );
    docker_load(&pusher, &archive);
    docker_ok(&pusher, &["push", &name]);

    let result = run_py(
        &DockerCli::new(&daemon.socket()),
        &format!(
            r#"{PY_CALL}
name = "{name}"
inspect = client.api.inspect_distribution
print(json.dumps({{
    "right": call(lambda: inspect(name, auth_config={{"username": "dora", "password": "s3cret"}})),
    "wrong": call(lambda: inspect(name, auth_config={{"username": "dora", "password": "nope"}})),
    "anonymous": call(lambda: inspect(name)),
}}))
"#
        ),
    );
    assert_eq!(result["right"][0], 200, "{result}");
    assert_eq!(
        result["right"][1]["Descriptor"],
        descriptor(image.media_type(), image.digest(), image.size())
    );
    assert_eq!(
        result["right"][1]["Platforms"],
        json!([{"architecture": "amd64", "os": "linux"}])
    );
    assert_eq!(result["wrong"][0], 401, "{result}");
    assert!(
        result["wrong"][1]
            .as_str()
            .is_some_and(|m| m.ends_with("unauthorized: incorrect username or password")),
        "{result}"
    );
    // Anonymous, the token grants nothing and the registry names the scope it wanted: moby
    // reads that challenge as DENIED, 403.
    assert_eq!(result["anonymous"][0], 403, "{result}");
    assert!(
        result["anonymous"][1]
            .as_str()
            .is_some_and(|m| m.starts_with("denied: requested access to the resource is denied")),
        "{result}"
    );
}

fn catalogue() -> Vec<IndexedRepository> {
    vec![
        IndexedRepository::new("app/alpha", "the first app", 5, false),
        IndexedRepository::new("app", "the official app", 120, true),
        IndexedRepository::new("team/app-beta", "beta of the app", 2, false).automated(),
        IndexedRepository::new("tools/app-gamma", "a tool for apps", 3, false),
        IndexedRepository::new("other", "not matching", 99, false),
    ]
}

#[test]
fn docker_cli_searches_an_index_with_limit_and_star_filter() {
    let index = SearchIndex::start(SearchIndexOptions {
        repositories: catalogue(),
        credentials: None,
    });
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let term = format!("{}/app", index.host());
    let out = docker_ok(
        &docker,
        &[
            "search",
            "--limit",
            "3",
            "--filter",
            "stars=3",
            "--no-trunc",
            &term,
        ],
    );
    // The index returns the first three matches; the star filter then drops the 2-star one.
    assert_eq!(
        table(&out),
        vec![
            vec!["NAME", "DESCRIPTION", "STARS", "OFFICIAL"],
            vec!["app/alpha", "the first app", "5"],
            vec!["app", "the official app", "120", "[OK]"],
        ]
    );
    let queries = index.queries();
    assert_eq!(queries.len(), 1);
    assert_eq!(queries[0].term, "app");
    assert_eq!(queries[0].limit.as_deref(), Some("3"));

    let out = docker_ok(&docker, &["search", "--filter", "is-official=true", &term]);
    assert_eq!(
        table(&out)[1..],
        [vec!["app", "the official app", "120", "[OK]"]]
    );
    assert_eq!(index.queries()[1].limit.as_deref(), Some("25"));

    // docker-py's high-level search asks the same way.
    let result = run_py(
        &docker,
        &format!("print(json.dumps([r['name'] for r in client.images.search('{term}', limit=1)]))"),
    );
    assert_eq!(result, json!(["app/alpha"]));
    assert_eq!(index.queries()[2].limit.as_deref(), Some("1"));

    // docker-registry speaks only the v2 API: its 404 is moby's "unknown" error.
    let registry = TestRegistry::shared();
    let out = docker_fails(&docker, &["search", &format!("{}/app", registry.host())]);
    assert!(
        out.stderr
            .contains("Error response from daemon: Unexpected status code 404"),
        "{out}"
    );
}

#[test]
fn docker_py_and_dockerode_search_and_errors_read_as_mobys() {
    let index = SearchIndex::start(SearchIndexOptions {
        repositories: catalogue(),
        credentials: Some(("sam".into(), "pw".into())),
    });
    let daemon = start_daemon();
    let host = index.host();
    let term = format!("{host}/app");

    // docker-py sends no credentials with a search: the index refuses it.
    let anonymous = DockerCli::new(&daemon.socket());
    let result = run_py(
        &anonymous,
        &format!(
            r#"{PY_CALL}
print(json.dumps({{
    "anonymous": call(lambda: client.api.search("{term}", limit=2)),
    "too_many": call(lambda: client.api.search("{term}", limit=101)),
    "negative": call(lambda: client.api.search("{term}", limit=-1)),
    "scheme": call(lambda: client.api.search("https://{term}")),
}}))
"#
        ),
    );
    assert_eq!(
        result,
        json!({
            "anonymous": [500, "Unexpected status code 401"],
            "too_many": [400, "limit 101 is outside the range of [1, 100]"],
            "negative": [400, "limit -1 is outside the range of [1, 100]"],
            "scheme": [400, format!(
                "invalid repository name: repository name (https://{term}) should not have a scheme"
            )],
        })
    );

    // dockerode passes credentials as X-Registry-Auth.
    let result = run_js(
        &anonymous,
        &format!(
            r#"
const authconfig = {{ username: 'sam', password: 'pw', serveraddress: '{host}' }};
const found = await docker.searchImages({{ term: '{term}', limit: 2, authconfig }});
const official = await docker.searchImages({{
  term: '{term}', authconfig, filters: JSON.stringify({{ 'is-official': ['false'], stars: ['3'] }}),
}});
const automated = await docker.searchImages({{
  term: '{term}', authconfig, filters: JSON.stringify({{ 'is-automated': ['true'] }}),
}});
return {{ found, official, automated }};
"#
        ),
    );
    assert_eq!(
        result["found"],
        json!([
            {"star_count": 5, "is_official": false, "name": "app/alpha", "is_automated": false, "description": "the first app"},
            {"star_count": 120, "is_official": true, "name": "app", "is_automated": false, "description": "the official app"},
        ])
    );
    assert_eq!(
        result["official"],
        json!([
            {"star_count": 5, "is_official": false, "name": "app/alpha", "is_automated": false, "description": "the first app"},
            {"star_count": 3, "is_official": false, "name": "tools/app-gamma", "is_automated": false, "description": "a tool for apps"},
        ])
    );
    // Nothing is automated any more: moby answers without asking the index.
    assert_eq!(result["automated"], json!([]));
    let users: Vec<Option<String>> = index
        .queries()
        .iter()
        .filter(|q| q.status == 200)
        .map(|q| q.user.clone())
        .collect();
    assert_eq!(users, vec![Some("sam".to_owned()); 2]);

    // The docker CLI sends the credentials stored for the index named by the term.
    let cli = DockerCli::new(&daemon.socket()).with_auth(&host, "sam", "pw");
    let out = docker_ok(
        &cli,
        &["search", "--format", "{{.Name}} {{.StarCount}}", &term],
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "app/alpha 5",
            "app 120",
            "team/app-beta 2",
            "tools/app-gamma 3"
        ]
    );

    // Bad parameters, on the wire.
    for (query, status, message) in [
        (
            "limit=abc",
            400,
            "invalid limit specified: strconv.Atoi: parsing \"abc\": invalid syntax",
        ),
        (
            "filters=%7B%22label%22%3A%5B%22x%22%5D%7D",
            400,
            "invalid filter 'label'",
        ),
        (
            "filters=%7B%22stars%22%3A%5B%22many%22%5D%7D",
            400,
            "invalid filter 'stars=many': strconv.Atoi: parsing \"many\": invalid syntax",
        ),
    ] {
        let r = daemon.request(
            "GET",
            &format!("/v1.50/images/search?term=x&{query}"),
            &[],
            b"",
        );
        assert_eq!(r.status, status, "{query}: {}", r.text());
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON error");
        assert_eq!(body["message"], message, "{query}");
    }
}

#[test]
fn dockerode_inspects_distribution_and_search_keeps_its_path_from_images() {
    let registry = TestRegistry::shared();
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let repo = unique_repo("dist/node");
    let index = IndexBuilder::new(Flavor::Docker)
        .platform("linux/amd64", &[LayerSpec::single(1_000)])
        .platform("linux/s390x", &[LayerSpec::single(1_000)])
        .build();
    registry.push_index(&repo, "2", &index);
    let name = format!("{}/{repo}:2", registry.host());
    let result = run_js(
        &docker,
        &format!(
            r#"
const info = await docker.getImage('{name}').distribution();
const images = await docker.listImages();
return {{ info, images }};
"#
        ),
    );
    assert_eq!(
        result,
        json!({
            "info": {
                "Descriptor": descriptor(index.media_type(), index.digest(), index.size()),
                "Platforms": [
                    {"architecture": "amd64", "os": "linux"},
                    {"architecture": "s390x", "os": "linux"},
                ],
            },
            "images": [],
        })
    );

    // `DELETE /images/search` still removes the image named `search`, as in moby.
    let scratch = Scratch::new();
    let image = ImageBuilder::new(Flavor::Oci)
        .layer(LayerSpec::single(100))
        .build();
    let archive = scratch.archive(
        "search.tar",
        &ArchiveBuilder::new(ArchiveFormat::Oci).image(&image, &["search:latest"]),
    );
    docker_load(&docker, &archive);
    let r = daemon.request("DELETE", "/v1.50/images/search", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = daemon.request("GET", "/images/search/json", &[], b"");
    assert_eq!(r.status, 404, "{}", r.text());
}
