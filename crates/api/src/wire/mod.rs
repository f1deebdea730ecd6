//! The Engine API's JSON answers: one type per answer, with Docker's field names, built from the
//! engine's values for the API version the client asked for. Version differences are fields
//! that are present or absent, decided when the answer is built.

pub mod auth;
pub mod disk_usage;
pub mod distribution;
pub mod events;
pub mod images;
pub mod search;
pub mod system;
mod time;

#[cfg(test)]
mod sorted;
