//! Calls through dockerode (the npm package, as a Node.js program makes them) against hoistd:
//! each test runs a small script that prints what dockerode returned as JSON, and the assertions
//! compare it with the generator's digests.

mod foundation_support;

use foundation_support::*;
use hoist_testkit::archive::{ArchiveBuilder, ArchiveCompression, ArchiveFormat};
use hoist_testkit::docker::DockerCli;
use hoist_testkit::image::{Flavor, ImageBuilder, LayerSpec};

fn run_js(docker: &DockerCli, script: &str) -> serde_json::Value {
    docker.dockerode_json(script)
}

#[test]
fn dockerode_loads_and_lists_an_image() {
    let daemon = start_daemon();
    let docker = DockerCli::new(&daemon.socket());
    let scratch = Scratch::new();
    let repo = unique_repo("dockerode-load");
    let image = ImageBuilder::new(Flavor::Oci)
        .layer(LayerSpec::single(64 * 1024))
        .build();
    let archive = scratch.archive(
        "image.tar",
        &ArchiveBuilder::new(ArchiveFormat::Oci)
            .compression(ArchiveCompression::Gzip)
            .image(&image, &[&format!("{repo}:1")]),
    );
    let result = run_js(
        &docker,
        &format!(
            r#"
const fs = require('fs');
const stream = await docker.loadImage(fs.createReadStream({archive:?}));
const output = await new Promise((resolve, reject) => {{
  let text = ''; stream.on('data', (d) => text += d); stream.on('end', () => resolve(text));
  stream.on('error', reject);
}});
const images = await docker.listImages({{ filters: {{ reference: ['{repo}'] }} }});
const version = await docker.version();
return {{ output, images: images.map((i) => [i.Id, i.RepoTags]), api: version.ApiVersion }};
"#,
            archive = archive.display().to_string(),
        ),
    );
    assert_eq!(result["api"], "1.50");
    let output = result["output"].as_str().unwrap();
    assert!(
        output.contains(&format!("Loaded image: {repo}:1")),
        "load output: {output}"
    );
    assert_eq!(
        result["images"],
        serde_json::json!([[image.digest(), [format!("{repo}:1")]]])
    );
}
