//! Manifests: existence by digest, exact-bytes PUT, and verified GET.

use bytes::Bytes;
use hoist_oci::limits::MAX_MANIFEST_BYTES;
use hoist_oci::media::MANIFEST_MEDIA_TYPES;
use hoist_reference::Digest;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use sha2::Digest as _;

use crate::RegistryError;
use crate::error::from_response;
use crate::http_util::read_bounded;
use crate::repository::{Repository, header_length};
use crate::transport::{Call, Target};

/// A manifest as the registry stores it.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    pub bytes: Bytes,
    /// `Content-Type` without parameters, or the document's `mediaType` when the header is
    /// missing or generic.
    pub media_type: String,
    /// Computed from the bytes (and checked against the reference when it is a digest).
    pub digest: Digest,
}

impl Repository {
    /// `HEAD /v2/<name>/manifests/<reference>`: the digest the registry has under that tag or
    /// digest, or `None` if it has nothing.
    pub async fn manifest_digest(&self, reference: &str) -> Result<Option<Digest>, RegistryError> {
        let call = self.manifest_call("check manifest on", Method::HEAD, reference);
        let response = self.transport().send(call).await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            // Some registries do not implement HEAD on manifests (containerd falls back too).
            StatusCode::METHOD_NOT_ALLOWED => {
                return match self.get_manifest(reference).await {
                    Ok(manifest) => Ok(Some(manifest.digest)),
                    Err(e) if e.status() == Some(404) => Ok(None),
                    Err(e) => Err(e),
                };
            }
            _ => return Err(from_response(response, "HEAD", false).await),
        }
        if let Some(digest) = digest_header(response.headers()) {
            return Ok(Some(digest));
        }
        if let Ok(digest) = Digest::parse(reference) {
            return Ok(Some(digest));
        }
        // A registry that does not say: hash the document ourselves.
        Ok(Some(self.get_manifest(reference).await?.digest))
    }

    /// `PUT` the exact bytes with `Content-Type` = `media_type`; the registry's
    /// `Docker-Content-Digest`, when sent, must be `digest`.
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        const OPERATION: &str = "push manifest to";
        let mut call = self.manifest_call(OPERATION, Method::PUT, reference);
        call.headers.remove(ACCEPT);
        let content_type = HeaderValue::from_str(media_type).map_err(|_| {
            RegistryError::Config(format!("invalid manifest media type {media_type:?}"))
        })?;
        call.headers.insert(CONTENT_TYPE, content_type);
        call.body = Some(bytes);
        let response = self.transport().send(call).await?;
        match response.status() {
            StatusCode::CREATED
            | StatusCode::OK
            | StatusCode::ACCEPTED
            | StatusCode::NO_CONTENT => {
                match response
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                {
                    Some(actual) if actual != digest.as_str() => {
                        Err(RegistryError::DigestMismatch {
                            operation: OPERATION.to_owned(),
                            host: self.transport().host().to_owned(),
                            expected: digest.clone(),
                            actual: actual.to_owned(),
                        })
                    }
                    _ => Ok(()),
                }
            }
            _ => Err(from_response(response, "PUT", false).await),
        }
    }

    /// `GET` a manifest by tag or digest.
    pub async fn get_manifest(&self, reference: &str) -> Result<FetchedManifest, RegistryError> {
        const OPERATION: &str = "fetch manifest from";
        let call = self.manifest_call(OPERATION, Method::GET, reference);
        let response = self.transport().send(call).await?;
        if response.status() != StatusCode::OK {
            return Err(from_response(response, "GET", false).await);
        }
        let host = self.transport().host().to_owned();
        let too_large = || {
            RegistryError::invalid_response(
                OPERATION,
                &host,
                format!("manifest is larger than {MAX_MANIFEST_BYTES} bytes"),
            )
        };
        if header_length(response.headers()).is_some_and(|n| n > MAX_MANIFEST_BYTES) {
            return Err(too_large());
        }
        let headers = response.headers().clone();
        let bytes = read_bounded(response, MAX_MANIFEST_BYTES as usize + 1).await;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(too_large());
        }
        if let Some(expected) = header_length(&headers)
            && expected != bytes.len() as u64
        {
            return Err(RegistryError::invalid_response(
                OPERATION,
                &host,
                format!(
                    "manifest body ended after {} of {expected} bytes",
                    bytes.len()
                ),
            ));
        }
        let bytes = Bytes::from(bytes);
        let expected = Digest::parse(reference)
            .ok()
            .or_else(|| digest_header(&headers));
        let digest = match &expected {
            Some(expected) => digest_of(expected.algorithm(), &bytes),
            None => digest_of("sha256", &bytes),
        }
        .ok_or_else(|| {
            RegistryError::invalid_response(OPERATION, &host, "unsupported digest algorithm")
        })?;
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(RegistryError::DigestMismatch {
                operation: OPERATION.to_owned(),
                host,
                expected,
                actual: digest.to_string(),
            });
        }
        let media_type = media_type(&headers, &bytes);
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    fn manifest_call(
        &self,
        operation: &'static str,
        method: Method,
        reference: &str,
    ) -> Call<'static> {
        let path = self.api_path(&format!("manifests/{reference}"));
        let mut call = Call::new(operation, method, Target::Registry(path));
        // No wildcard: some registries (Artifactory) answer 406 to an Accept they dislike.
        if let Ok(accept) = HeaderValue::from_str(&MANIFEST_MEDIA_TYPES.join(", ")) {
            call.headers.insert(ACCEPT, accept);
        }
        call
    }
}

fn digest_header(headers: &HeaderMap) -> Option<Digest> {
    Digest::parse(headers.get("docker-content-digest")?.to_str().ok()?.trim()).ok()
}

fn digest_of(algorithm: &str, bytes: &[u8]) -> Option<Digest> {
    let hash: Vec<u8> = match algorithm {
        "sha256" => sha2::Sha256::digest(bytes).to_vec(),
        "sha384" => sha2::Sha384::digest(bytes).to_vec(),
        "sha512" => sha2::Sha512::digest(bytes).to_vec(),
        _ => return None,
    };
    let mut text = String::with_capacity(algorithm.len() + 1 + hash.len() * 2);
    text.push_str(algorithm);
    text.push(':');
    for b in hash {
        text.push_str(&format!("{b:02x}"));
    }
    Digest::parse(&text).ok()
}

fn media_type(headers: &HeaderMap, bytes: &[u8]) -> String {
    let header = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
        .filter(|v| !v.is_empty() && v != "application/json" && v != "application/octet-stream");
    header
        .or_else(|| {
            #[derive(serde::Deserialize)]
            struct MediaType {
                #[serde(rename = "mediaType")]
                media_type: Option<String>,
            }
            serde_json::from_slice::<MediaType>(bytes).ok()?.media_type
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_by_algorithm() {
        assert_eq!(
            digest_of("sha256", b"").unwrap().as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(
            digest_of("sha512", b"x")
                .unwrap()
                .as_str()
                .starts_with("sha512:")
        );
        assert!(digest_of("md5", b"x").is_none());
    }

    #[test]
    fn media_type_from_header_or_document() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            "application/vnd.oci.image.manifest.v1+json; charset=utf-8"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            media_type(&headers, b"{}"),
            "application/vnd.oci.image.manifest.v1+json"
        );
        let generic = {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, "application/json".parse().unwrap());
            h
        };
        assert_eq!(
            media_type(
                &generic,
                br#"{"mediaType":"application/vnd.oci.image.index.v1+json"}"#
            ),
            "application/vnd.oci.image.index.v1+json"
        );
    }
}
