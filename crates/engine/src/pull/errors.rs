//! How registry failures of a pull read to the user, in moby's words (`distribution/errors.go`).
//!
//! Access problems and unknown repositories are one message, "pull access denied …", and a 404:
//! a registry cannot be asked which of the two it is, and a 401 would make the docker CLI prompt
//! for a Docker Hub login whatever registry was asked.

use hoist_reference::Reference;
use hoist_registry::RegistryError;

use crate::EngineError;

/// A failure to resolve `reference` (before anything was streamed).
pub(crate) fn resolve_error(error: RegistryError, reference: &Reference) -> EngineError {
    let codes: Vec<String> = error
        .error_codes()
        .iter()
        .map(|c| c.code.to_ascii_uppercase())
        .collect();
    let has = |code: &str| codes.iter().any(|c| c == code);
    let access =
        has("DENIED") || has("UNAUTHORIZED") || has("NAME_UNKNOWN") || error.is_unauthorized();
    if access || error.is_denied() {
        return EngineError::NotFound(format!(
            "pull access denied for {}, repository does not exist or may require 'docker login': {error}",
            reference.familiar_name()
        ));
    }
    if has("MANIFEST_UNKNOWN") || error.status() == Some(404) {
        return EngineError::NotFound(format!(
            "manifest for {} not found: {error}",
            reference.familiar_string()
        ));
    }
    EngineError::Registry(error)
}
