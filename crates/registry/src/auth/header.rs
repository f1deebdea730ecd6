//! `Authorization` header values, marked sensitive so that hyper's and http's Debug output
//! never show them.

use base64::Engine as _;
use reqwest::header::HeaderValue;

use crate::RegistryError;

pub(crate) fn basic_header(username: &str, password: &str) -> Result<HeaderValue, RegistryError> {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    sensitive(&format!("Basic {encoded}"))
}

pub(crate) fn bearer_header(token: &str) -> Result<HeaderValue, RegistryError> {
    sensitive(&format!("Bearer {token}"))
}

fn sensitive(value: &str) -> Result<HeaderValue, RegistryError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        RegistryError::Config("credentials contain characters not allowed in a header".to_owned())
    })?;
    header.set_sensitive(true);
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_is_sensitive() {
        let h = basic_header("alice", "s3cr3t").unwrap();
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().unwrap(), "Basic YWxpY2U6czNjcjN0");
    }
}
