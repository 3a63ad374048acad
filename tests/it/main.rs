//! The one integration-test binary: a real server on an ephemeral port, real clients over the wire.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may stop at the first surprise

mod auth;
mod binary;
mod common;
mod config;
mod engine;
mod governance;
mod iceberg;
mod jwt;
mod layout;
mod matviews;
mod object_stores;
mod policy;
mod protocol;
mod robustness;
mod rules;
mod storage;
