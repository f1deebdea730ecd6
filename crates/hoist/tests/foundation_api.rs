//! The Engine API core over raw HTTP/1.1 on hoistd's socket: every route bare and versioned,
//! the version range and moby's refusals, the daemon headers, `/_ping`, 404s, error bodies and
//! how errors name images. Status codes, headers and bodies are checked exactly.

mod foundation_support;

use foundation_support::*;
use hoist_testkit::archive::{ArchiveBuilder, ArchiveFormat};
use hoist_testkit::hoistd::{Hoistd, RawResponse};
use hoist_testkit::image::{Flavor, Image, ImageBuilder};

const TAR: (&str, &str) = ("Content-Type", "application/x-tar");

fn archive_bytes(image: &Image, tags: &[&str]) -> Vec<u8> {
    ArchiveBuilder::new(ArchiveFormat::Oci)
        .image(image, tags)
        .to_raw()
        .to_bytes()
}

/// The headers moby's middlewares put on every routed response.
fn assert_daemon_headers(response: &RawResponse, what: &str) {
    assert_eq!(response.header("Api-Version"), Some("1.50"), "{what}");
    assert_eq!(response.header("Ostype"), Some("linux"), "{what}");
    assert_eq!(
        response.header("Server"),
        Some(format!("hoist/{} (linux)", env!("CARGO_PKG_VERSION")).as_str()),
        "{what}"
    );
    assert_eq!(
        response.header("Docker-Experimental"),
        Some("false"),
        "{what}"
    );
}

/// A JSON error exactly as moby writes it: `{"message":…}` and a newline, `application/json`.
fn assert_json_error(response: &RawResponse, status: u16, message: &str, what: &str) {
    assert_eq!(response.status, status, "{what}: {}", response.text());
    assert_eq!(
        response.header("Content-Type"),
        Some("application/json"),
        "{what}"
    );
    assert_eq!(
        response.text(),
        format!("{}\n", serde_json::json!({ "message": message })),
        "{what}"
    );
}

fn load_raw(daemon: &Hoistd, prefix: &str, body: &[u8]) -> RawResponse {
    let response = daemon.request(
        "POST",
        &format!("{prefix}/images/load?quiet=1"),
        &[TAR],
        body,
    );
    assert_eq!(response.status, 200, "load: {}", response.text());
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    response
}

#[test]
fn every_route_answers_bare_and_versioned() {
    let daemon = start_daemon();
    for prefix in ["", "/v1.24", "/v1.41", "/v1.50"] {
        let repo = unique_repo("routes");
        let image = ImageBuilder::new(Flavor::Oci).build();
        let tag = format!("{repo}:1");
        let at = |path: &str| format!("{prefix}{path}");

        let loaded = load_raw(&daemon, prefix, &archive_bytes(&image, &[&tag]));
        assert_eq!(
            loaded.text(),
            format!("{{\"stream\":\"Loaded image: {tag}\\n\"}}\r\n")
        );
        assert_daemon_headers(&loaded, "load");

        let ping = daemon.request("GET", &at("/_ping"), &[], b"");
        assert_eq!((ping.status, ping.text().as_str()), (200, "OK"));
        assert_daemon_headers(&ping, "GET /_ping");
        let head = daemon.request("HEAD", &at("/_ping"), &[], b"");
        assert_eq!(head.status, 200);
        assert_daemon_headers(&head, "HEAD /_ping");

        let version = daemon.request("GET", &at("/version"), &[], b"");
        assert_eq!(version.status, 200);
        assert_eq!(version.json()["ApiVersion"], "1.50");
        assert_eq!(version.json()["MinAPIVersion"], "1.24");
        assert_daemon_headers(&version, "version");

        let info = daemon.request("GET", &at("/info"), &[], b"");
        assert_eq!(info.status, 200);
        assert_daemon_headers(&info, "info");

        let list = daemon.request("GET", &at("/images/json"), &[], b"");
        assert_eq!(list.status, 200);
        assert!(
            list.json()
                .as_array()
                .expect("array")
                .iter()
                .any(|i| i["Id"] == image.digest())
        );
        assert_daemon_headers(&list, "images/json");

        let inspect = daemon.request("GET", &at(&format!("/images/{tag}/json")), &[], b"");
        assert_eq!(inspect.status, 200, "{}", inspect.text());
        assert_eq!(inspect.json()["Id"], image.digest());
        assert_daemon_headers(&inspect, "inspect");

        let history = daemon.request("GET", &at(&format!("/images/{tag}/history")), &[], b"");
        assert_eq!(history.status, 200);
        assert_eq!(history.json()[0]["Id"], image.digest());
        assert_daemon_headers(&history, "history");

        let tagged = daemon.request(
            "POST",
            &at(&format!("/images/{tag}/tag?repo={repo}-copy&tag=2")),
            &[],
            b"",
        );
        assert_eq!(tagged.status, 201, "{}", tagged.text());
        assert!(tagged.body.is_empty());
        assert_daemon_headers(&tagged, "tag");

        let saved = daemon.request("GET", &at(&format!("/images/{tag}/get")), &[], b"");
        assert_eq!(saved.status, 200);
        assert_eq!(saved.header("Content-Type"), Some("application/x-tar"));
        assert_daemon_headers(&saved, "get");
        let saved_many = daemon.request(
            "GET",
            &at(&format!("/images/get?names={tag}&names={repo}-copy:2")),
            &[],
            b"",
        );
        assert_eq!(saved_many.status, 200);
        assert_eq!(saved_many.header("Content-Type"), Some("application/x-tar"));

        let deleted = daemon.request("DELETE", &at(&format!("/images/{repo}-copy:2")), &[], b"");
        assert_eq!(deleted.status, 200);
        assert_eq!(
            deleted.json(),
            serde_json::json!([{"Untagged": format!("{repo}-copy:2")}])
        );
        assert_daemon_headers(&deleted, "delete");

        let options = daemon.request("OPTIONS", &at("/images/json"), &[], b"");
        assert_eq!(options.status, 200);
        assert!(options.body.is_empty());
    }
}

#[test]
fn versions_outside_1_24_to_1_50_are_refused_with_moby_wording() {
    let daemon = start_daemon();
    for (version, path) in [
        ("1.51", "/_ping"),
        ("1.52", "/images/json"),
        ("2.0", "/version"),
        ("1.100", "/info"),
        // A component beyond any integer is clamped, as Go's strconv.Atoi does: too new.
        ("1.99999999999999999999", "/_ping"),
    ] {
        let response = daemon.request("GET", &format!("/v{version}{path}"), &[], b"");
        assert_json_error(
            &response,
            400,
            &format!("client version {version} is too new. Maximum supported API version is 1.50"),
            &format!("/v{version}{path}"),
        );
        assert_daemon_headers(&response, version);
    }
    // Older clients predate JSON errors, so moby answers them in plain text.
    for (version, path) in [
        ("1.23", "/_ping"),
        ("1.5", "/images/json"),
        ("1.0", "/version"),
    ] {
        let response = daemon.request("GET", &format!("/v{version}{path}"), &[], b"");
        assert_eq!(response.status, 400, "/v{version}{path}");
        assert_eq!(
            response.header("Content-Type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(response.header("X-Content-Type-Options"), Some("nosniff"));
        assert_eq!(
            response.text(),
            format!(
                "client version {version} is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version\n"
            )
        );
        assert_daemon_headers(&response, version);
    }
    // Versions compare as numbers: 1.5 < 1.24 < 1.41 < 1.50.
    for version in ["1.24", "1.41", "1.50", "1.050"] {
        let response = daemon.request("GET", &format!("/v{version}/_ping"), &[], b"");
        assert_eq!(response.status, 200, "/v{version}/_ping");
    }
}

#[test]
fn ping_answers_get_and_head_with_moby_headers() {
    let daemon = start_daemon();
    for path in ["/_ping", "/v1.50/_ping"] {
        let get = daemon.request("GET", path, &[], b"");
        assert_eq!(get.status, 200);
        assert_eq!(get.body, b"OK");
        assert_eq!(get.header("Content-Length"), Some("2"));
        assert_eq!(
            get.header("Content-Type"),
            Some("text/plain; charset=utf-8")
        );
        let head = daemon.request("HEAD", path, &[], b"");
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(head.header("Content-Length"), Some("0"));
        assert_eq!(
            head.header("Content-Type"),
            Some("text/plain; charset=utf-8")
        );
        for response in [&get, &head] {
            assert_daemon_headers(response, path);
            assert_eq!(response.header("Builder-Version"), Some("2"));
            assert_eq!(response.header("Swarm"), Some("inactive"));
            assert_eq!(
                response.header("Cache-Control"),
                Some("no-cache, no-store, must-revalidate")
            );
            assert_eq!(response.header("Pragma"), Some("no-cache"));
        }
    }
}

#[test]
fn unknown_routes_and_wrong_methods_are_404_page_not_found() {
    let daemon = start_daemon();
    for (method, path) in [
        ("GET", "/nope"),
        ("GET", "/v1.50/nope"),
        ("GET", "/containers/json"),
        ("POST", "/v1.50/containers/create"),
        ("PUT", "/images/json"),
        ("POST", "/images/json"),
        ("DELETE", "/_ping"),
        ("POST", "/version"),
        ("GET", "/images/load"),
        ("GET", "/v1.50/images/foo/push"),
        ("POST", "/images/foo/history"),
        ("PATCH", "/images/foo"),
        ("GET", "/images/foo/unknown"),
    ] {
        let response = daemon.request(method, path, &[], b"");
        assert_json_error(
            &response,
            404,
            "page not found",
            &format!("{method} {path}"),
        );
    }
}

#[test]
fn errors_name_images_as_moby_does() {
    let daemon = start_daemon();
    let zeros = format!("sha256:{}", "0".repeat(64));
    for (name, shown) in [
        ("foo", "foo:latest".to_owned()),
        ("foo:1", "foo:1".to_owned()),
        ("docker.io/library/foo", "foo:latest".to_owned()),
        ("docker.io/library/foo:2", "foo:2".to_owned()),
        ("user/foo", "user/foo:latest".to_owned()),
        ("docker.io/user/foo:3", "user/foo:3".to_owned()),
        ("index.docker.io/user/foo", "user/foo:latest".to_owned()),
        ("localhost:5000/a/b:1", "localhost:5000/a/b:1".to_owned()),
        (
            "registry.test:5000/x",
            "registry.test:5000/x:latest".to_owned(),
        ),
        ("[::1]:5000/x:7", "[::1]:5000/x:7".to_owned()),
        (&format!("foo@{zeros}"), format!("foo@{zeros}")),
    ] {
        let message = format!("No such image: {shown}");
        for (method, path) in [
            ("GET", format!("/v1.50/images/{name}/json")),
            ("GET", format!("/images/{name}/history")),
            ("GET", format!("/images/{name}/get")),
            ("POST", format!("/images/{name}/tag?repo=somewhere")),
            ("DELETE", format!("/v1.50/images/{name}")),
        ] {
            let response = daemon.request(method, &path, &[], b"");
            assert_json_error(&response, 404, &message, &format!("{method} {path}"));
            assert_daemon_headers(&response, &path);
        }
    }
    // An ID that matches nothing is shown as given.
    let response = daemon.request("GET", &format!("/images/{zeros}/json"), &[], b"");
    assert_json_error(&response, 404, &format!("No such image: {zeros}"), "by ID");
}

#[test]
fn invalid_references_are_400_with_distributions_message() {
    let daemon = start_daemon();
    let image = ImageBuilder::new(Flavor::Oci).build();
    let repo = unique_repo("valid");
    load_raw(&daemon, "", &archive_bytes(&image, &[&format!("{repo}:1")]));
    let hex64 = "a".repeat(64);
    let long = format!("{}/{}", "a".repeat(128), "b".repeat(128));
    for (path, message) in [
        (
            "/images/UPPER/json".to_owned(),
            "invalid reference format: repository name (library/UPPER) must be lowercase"
                .to_owned(),
        ),
        (
            "/images/foo::bar/json".to_owned(),
            "invalid reference format".to_owned(),
        ),
        (
            format!("/images/{long}/json"),
            "repository name must not be more than 255 characters".to_owned(),
        ),
        (
            format!("/images/{repo}:1/tag?repo=Bad"),
            "invalid reference format: repository name (library/Bad) must be lowercase".to_owned(),
        ),
        (
            format!("/images/{repo}:1/tag?repo={hex64}"),
            format!(
                "invalid repository name ({hex64}), cannot specify 64-byte hexadecimal strings"
            ),
        ),
        (
            format!("/images/{repo}:1/tag?repo=x&tag=bad%2Ftag"),
            "invalid tag format".to_owned(),
        ),
        (
            format!("/images/{repo}:1/tag?repo=x%40sha256%3A{hex64}"),
            "cannot import digest reference".to_owned(),
        ),
        (
            format!("/images/{repo}:1/tag?repo=sha256&tag=abc"),
            "refusing to create an ambiguous tag using digest algorithm as name".to_owned(),
        ),
        (
            "/images/json?filters=%7B%22nope%22%3A%7B%22x%22%3Atrue%7D%7D".to_owned(),
            "invalid filter 'nope'".to_owned(),
        ),
    ] {
        let method = if path.contains("/tag?") {
            "POST"
        } else {
            "GET"
        };
        let response = daemon.request(method, &path, &[], b"");
        assert_json_error(&response, 400, &message, &path);
    }
    // moby's quirk: a tag request without `repo` does nothing and answers 200.
    let response = daemon.request("POST", &format!("/images/{repo}:1/tag"), &[], b"");
    assert_eq!(response.status, 200);
    // An empty name cannot be deleted.
    for path in ["/images/", "/v1.50/images/"] {
        let response = daemon.request("DELETE", path, &[], b"");
        assert_json_error(&response, 400, "image name cannot be blank", path);
    }
}

#[test]
fn load_streams_loaded_lines_and_reports_bad_archives_in_stream() {
    let daemon = start_daemon();
    let repo = unique_repo("streamed");
    let a = ImageBuilder::new(Flavor::Oci).build();
    let b = ImageBuilder::new(Flavor::Oci).build();
    let body = ArchiveBuilder::new(ArchiveFormat::Oci)
        .image(
            &a,
            &[&format!("{repo}:a"), &format!("localhost:5000/{repo}:a")],
        )
        .image(&b, &[])
        .to_raw()
        .to_bytes();
    // `quiet` changes nothing; absent, 0 or 1.
    for query in ["", "?quiet=0", "?quiet=1"] {
        let response = daemon.request("POST", &format!("/v1.50/images/load{query}"), &[TAR], &body);
        assert_eq!(response.status, 200);
        assert_eq!(response.header("Content-Type"), Some("application/json"));
        assert_eq!(
            response.text(),
            format!(
                "{{\"stream\":\"Loaded image: {repo}:a\\n\"}}\r\n{{\"stream\":\"Loaded image: localhost:5000/{repo}:a\\n\"}}\r\n{{\"stream\":\"Loaded image ID: {}\\n\"}}\r\n",
                b.digest()
            )
        );
    }
    // Not an archive: 200, then the error in the stream, as moby reports backend errors.
    let response = daemon.request(
        "POST",
        "/images/load",
        &[TAR],
        b"this is not a tar archive at all",
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    let lines = response.json_lines();
    assert_eq!(lines.len(), 1, "{}", response.text());
    let message = lines[0]["errorDetail"]["message"]
        .as_str()
        .expect("errorDetail.message");
    assert_eq!(lines[0]["error"], message);
    assert!(message.starts_with("invalid archive"), "{message}");
    // An empty body likewise.
    let response = daemon.request("POST", "/images/load", &[TAR], b"");
    assert_eq!(response.status, 200);
    assert!(
        response.json_lines()[0]["errorDetail"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("invalid archive")),
        "{}",
        response.text()
    );
    assert_eq!(daemon.request("GET", "/_ping", &[], b"").status, 200);
}

#[test]
fn image_list_and_inspect_fields_follow_the_api_version() {
    let daemon = start_daemon();
    let repo = unique_repo("versioned");
    let image = ImageBuilder::new(Flavor::Oci).label("team", "api").build();
    let dangling = ImageBuilder::new(Flavor::Oci).build();
    load_raw(&daemon, "", &archive_bytes(&image, &[&format!("{repo}:1")]));
    load_raw(&daemon, "", &archive_bytes(&dangling, &[]));

    let list_at = |version: &str, query: &str| -> Vec<serde_json::Value> {
        let response = daemon.request("GET", &format!("/v{version}/images/json{query}"), &[], b"");
        assert_eq!(response.status, 200, "{}", response.text());
        response.json().as_array().expect("array").clone()
    };
    let summary = |all: &[serde_json::Value], id: &str| -> serde_json::Value {
        all.iter()
            .find(|i| i["Id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed: {all:?}"))
            .clone()
    };
    let new = summary(&list_at("1.50", ""), image.digest());
    assert_eq!(new["RepoTags"], serde_json::json!([format!("{repo}:1")]));
    // As moby's containerd store: the digest in the repository of the image's name.
    assert_eq!(
        new["RepoDigests"],
        serde_json::json!([format!("{repo}@{}", image.digest())])
    );
    assert_eq!(new["ParentId"], "");
    assert_eq!(new["Containers"], -1);
    assert_eq!(new["SharedSize"], -1);
    assert_eq!(new["Created"], 1_735_689_600);
    assert_eq!(new["Size"], image.size() + image.blobs_size());
    assert_eq!(new["Labels"]["team"], "api");
    assert_eq!(new["Descriptor"], image.descriptor());
    assert!(new.get("VirtualSize").is_none());
    let dangling_summary = summary(&list_at("1.50", ""), dangling.digest());
    assert_eq!(dangling_summary["RepoTags"], serde_json::json!([]));

    let old = summary(&list_at("1.43", ""), image.digest());
    assert_eq!(old["VirtualSize"], new["Size"]);
    assert!(old.get("Descriptor").is_none());
    assert!(
        summary(&list_at("1.47", ""), image.digest())
            .get("Descriptor")
            .is_none()
    );
    assert!(
        summary(&list_at("1.48", ""), image.digest())
            .get("Descriptor")
            .is_some()
    );

    // Filters: moby's map form and the older list form; `filter` below 1.41.
    let ids = |all: Vec<serde_json::Value>| -> Vec<String> {
        all.iter()
            .map(|i| i["Id"].as_str().unwrap().to_owned())
            .collect()
    };
    let encoded = |json: &str| {
        json.replace('{', "%7B")
            .replace('}', "%7D")
            .replace('"', "%22")
            .replace(':', "%3A")
            .replace('[', "%5B")
            .replace(']', "%5D")
    };
    assert_eq!(
        ids(list_at(
            "1.50",
            &format!("?filters={}", encoded(r#"{"dangling":{"true":true}}"#))
        )),
        [dangling.digest()]
    );
    assert_eq!(
        ids(list_at(
            "1.50",
            &format!("?filters={}", encoded(r#"{"dangling":["false"]}"#))
        )),
        [image.digest()]
    );
    assert_eq!(
        ids(list_at(
            "1.50",
            &format!(
                "?filters={}",
                encoded(&format!(r#"{{"reference":{{"{repo}":true}}}}"#))
            )
        )),
        [image.digest()]
    );
    assert_eq!(
        ids(list_at(
            "1.50",
            &format!("?filters={}", encoded(r#"{"label":["team=api"]}"#))
        )),
        [image.digest()]
    );
    assert_eq!(
        ids(list_at("1.40", &format!("?filter={repo}"))),
        [image.digest()]
    );

    let inspect_at = |version: &str| {
        let response = daemon.request(
            "GET",
            &format!("/v{version}/images/{repo}:1/json"),
            &[],
            b"",
        );
        assert_eq!(response.status, 200);
        response.json()
    };
    assert_eq!(inspect_at("1.50")["Descriptor"], image.descriptor());
    assert!(inspect_at("1.47").get("Descriptor").is_none());
    assert_eq!(inspect_at("1.47")["Id"], image.digest());
}

/// Percent-encodes everything but unreserved characters, for query values and path parts.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn references_are_normalized_as_docker_does() {
    let daemon = start_daemon();
    let image = ImageBuilder::new(Flavor::Oci).build();
    let repo = unique_repo("norm");
    load_raw(
        &daemon,
        "",
        &archive_bytes(&image, &[&format!("{repo}:src")]),
    );
    // (what the client asks for, the full name it means, the familiar form moby shows)
    let names = [
        (
            format!("docker.io/library/{repo}-a"),
            format!("docker.io/library/{repo}-a:latest"),
            format!("{repo}-a:latest"),
        ),
        (
            format!("index.docker.io/library/{repo}-b:2"),
            format!("docker.io/library/{repo}-b:2"),
            format!("{repo}-b:2"),
        ),
        (
            format!("docker.io/user/{repo}-c"),
            format!("docker.io/user/{repo}-c:latest"),
            format!("user/{repo}-c:latest"),
        ),
        (
            format!("user/{repo}-d:3"),
            format!("docker.io/user/{repo}-d:3"),
            format!("user/{repo}-d:3"),
        ),
        (
            format!("localhost/{repo}-e"),
            format!("localhost/{repo}-e:latest"),
            format!("localhost/{repo}-e:latest"),
        ),
        (
            format!("localhost:5000/a/b/{repo}-f:4"),
            format!("localhost:5000/a/b/{repo}-f:4"),
            format!("localhost:5000/a/b/{repo}-f:4"),
        ),
        (
            format!("[::1]:5000/{repo}-g:5"),
            format!("[::1]:5000/{repo}-g:5"),
            format!("[::1]:5000/{repo}-g:5"),
        ),
        (
            format!("registry.test:5000/{repo}-h"),
            format!("registry.test:5000/{repo}-h:latest"),
            format!("registry.test:5000/{repo}-h:latest"),
        ),
        (
            format!("{repo}-i:Tag_1.x-y"),
            format!("docker.io/library/{repo}-i:Tag_1.x-y"),
            format!("{repo}-i:Tag_1.x-y"),
        ),
    ];
    for (asked, _, _) in &names {
        let response = daemon.request(
            "POST",
            &format!("/v1.50/images/{repo}:src/tag?repo={}", encode(asked)),
            &[],
            b"",
        );
        assert_eq!(response.status, 201, "tag {asked}: {}", response.text());
    }
    // RepoTags: familiar forms, in the order of the full names (as containerd lists records).
    let mut expected: Vec<(String, String)> = names
        .iter()
        .map(|(_, full, familiar)| (full.clone(), familiar.clone()))
        .collect();
    expected.push((
        format!("docker.io/library/{repo}:src"),
        format!("{repo}:src"),
    ));
    expected.sort();
    let inspected = daemon.request("GET", &format!("/images/{repo}:src/json"), &[], b"");
    assert_eq!(
        inspected.json()["RepoTags"],
        serde_json::json!(expected.iter().map(|(_, f)| f).collect::<Vec<_>>())
    );
    // Every spelling of a name finds the image.
    for (asked, full, familiar) in &names {
        for spelling in [asked, full, familiar] {
            let response = daemon.request(
                "GET",
                &format!("/images/{}/json", encode(spelling)),
                &[],
                b"",
            );
            assert_eq!(
                response.status,
                200,
                "inspect {spelling}: {}",
                response.text()
            );
            assert_eq!(response.json()["Id"], image.digest());
        }
    }
    // distribution/reference (v0.6, as moby 28 vendors it) bounds the path, not the domain.
    let at_limit = format!("registry.test/{}", "a".repeat(255));
    let over = format!("{at_limit}a");
    let response = daemon.request(
        "POST",
        &format!("/images/{repo}:src/tag?repo={}", encode(&at_limit)),
        &[],
        b"",
    );
    assert_eq!(response.status, 201, "{}", response.text());
    let response = daemon.request(
        "POST",
        &format!("/images/{repo}:src/tag?repo={}", encode(&over)),
        &[],
        b"",
    );
    assert_json_error(
        &response,
        400,
        "repository name must not be more than 255 characters",
        "a 256-character path",
    );
}
