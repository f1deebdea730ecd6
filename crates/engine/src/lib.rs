//! hoist's use cases: load, save, list, inspect, tag, remove and push images.
//!
//! The engine knows nothing of HTTP servers: the API layer turns requests into calls here and
//! renders the typed results and progress events. Below it, the store keeps content and the
//! registry client talks to registries; neither knows of the other.

// The one unsafe call (handing a store blob to the registry client as a mapped file) is allowed
// where it stands, with its reason.
#![deny(unsafe_code)]

mod activity;
mod auth;
mod blocking;
mod disk_usage;
mod distribution;
mod downloads;
mod engine;
mod error;
mod event_log;
mod events;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod image_content;
mod images;
mod import;
mod layer_check;
mod load;
mod login;
mod media;
mod names;
mod observe;
mod platform;
mod progress;
mod provenance;
mod prune;
mod pull;
mod push;
mod retry;
mod save;
mod search;
mod source_queue;
mod summary;
mod system;
mod transfer;
mod uploads;

pub use hoist_registry::{ProxyConfig, mask_credentials};
pub use hoist_store::Descriptor;

pub use activity::{StoreUsage, TransferActivity};
pub use auth::{AuthConfig, normalize_server};
pub use disk_usage::DiskUsage;
pub use distribution::DistributionInfo;
pub use engine::{Engine, EngineConfig, LiveSettings};
pub use error::{EngineError, ErrorKind};
pub use events::{Action, Event, EventFilter, EventQuery, EventStream, EventType, SharedEvent};
pub use images::{HistoryEntry, ImageDetails, ImageSummary, ListFilters, Removal};
pub use images::{ImageData, ListOptions, ManifestKind, ManifestSummary};
pub use import::{ImportJob, ImportRequest};
pub use load::LoadedImage;
pub use names::ImageView;
pub use observe::{
    Direction, FailureCause, NoObserver, Observer, Operation, RetryCause, SkipReason,
};
pub use platform::Platform;
pub use progress::ProgressBoard;
pub use prune::{PruneReport, PrunedItem};
pub use pull::{PullEvent, PullJob, PullLayerState, PullPlatforms, PullRequest};
pub use push::{LayerState, PushEvent, PushJob, PushRequest};
pub use save::SavePlan;
pub use search::{SearchFilters, SearchRequest, SearchResult};
pub use system::{RegistrySettings, SystemInfo, kernel_version};
