//! The properties behind push speed, asserted without timing anything: a 1 GiB image is pushed
//! with bounded memory, its blobs arrive byte-identical (never recompressed), and uploads run in
//! parallel as seen from the registry's side of a proxy.

mod push_support;

use std::time::Instant;

use hoist_testkit::archive::ArchiveFormat;
use hoist_testkit::docker::DockerCli;
use hoist_testkit::image::{Compression, Flavor, ImageBuilder, LayerSpec};
use hoist_testkit::proxy::{FaultAction, FaultProxy, FaultRule};
use hoist_testkit::registry::TestRegistry;
use push_support::*;

const MIB: u64 = 1024 * 1024;
/// The bound on hoistd's peak resident memory while pushing 1 GiB.
const PEAK_RSS_LIMIT_KIB: u64 = 64 * 1024;

#[test]
fn a_one_gib_push_uses_bounded_memory_sends_stored_bytes_and_runs_in_parallel() {
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::in_front_of(registry);
    let mut hoistd = start_hoistd();
    let cli = DockerCli::new(&hoistd.socket()).with_timeout(std::time::Duration::from_secs(600));
    // The benchmark's "big" image: 5 layers of random data, 1 GiB in all. Stored gzip (level 0)
    // keeps generation fast; the bytes are incompressible either way.
    let image = ImageBuilder::new(Flavor::Docker)
        .seed(1024)
        .layers(
            [400, 300, 200, 100, 24]
                .map(|m| LayerSpec::single(m * MIB).compression(Compression::Gzip { level: 0 })),
        )
        .build();
    assert!(image.blobs_size() > 1024 * MIB);
    let repo = unique_repo("large");
    let name = format!("{}/{repo}:1", proxy.host());
    let started = Instant::now();
    load_image(&cli, &image, &[&name], ArchiveFormat::DockerLegacy);
    eprintln!(
        "load took {:?}, peak RSS {} KiB",
        started.elapsed(),
        hoistd.peak_rss_kib()
    );
    assert!(
        hoistd.peak_rss_kib() < PEAK_RSS_LIMIT_KIB,
        "loading 1 GiB took {} KiB of memory",
        hoistd.peak_rss_kib()
    );

    // Each upload body waits (up to a minute) until five are open, so a push that runs its
    // uploads in parallel is seen doing so however quickly the small layers would finish.
    proxy.add_rule(FaultRule::new(
        "PUT",
        "/blobs/uploads/",
        FaultAction::GatherUploads {
            count: 5,
            at_most: std::time::Duration::from_secs(60),
        },
    ));
    // A fresh process, so the high-water mark measures the push alone.
    hoistd.restart();
    let started = Instant::now();
    let out = cli.run(&["push", &name]);
    out.assert_success("push of 1 GiB");
    let peak = hoistd.peak_rss_kib();
    eprintln!("push took {:?}, peak RSS {peak} KiB", started.elapsed());
    assert!(
        peak < PEAK_RSS_LIMIT_KIB,
        "pushing 1 GiB took {peak} KiB of memory (limit {PEAK_RSS_LIMIT_KIB} KiB)"
    );

    // Every blob went once, all layers at the same time (5 layers + config; limit 5).
    for blob in image.blobs() {
        assert_eq!(
            proxy.completed_uploads(&blob.digest),
            1,
            "{} uploaded once; hoistd log:\n{}",
            blob.digest,
            hoistd.log()
        );
    }
    assert_eq!(
        proxy.max_uploads_in_flight(),
        5,
        "uploads run in parallel up to the default limit; requests: {:#?}",
        proxy.requests()
    );
    // Byte-identical: the registry's blobs hash to the generator's digests, so nothing was
    // recompressed or rewritten on the way.
    assert_registry_has_image(registry, &repo, "1", &image);
    assert_eq!(
        proxy.upload_bytes(),
        image.blobs_size() + image.size(),
        "exactly the stored blobs and the manifest went out, once"
    );
}
