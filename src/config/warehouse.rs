//! Where the tables live: the warehouse and its table formats, and the object stores
//! (S3, Azure, Google Cloud Storage) as configured and as resolved for the storage layer.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The formats a table's files are in: Delta Lake and Iceberg tables (Lakegate's own, with
/// versions and transactional writes), and plain Parquet, CSV or JSON files registered as
/// external tables. Kept in the catalog document by its lowercase name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    #[default]
    Delta,
    Iceberg,
    Parquet,
    Csv,
    Json,
    /// A PostgreSQL table read in place (postgres_fdw's foreign tables: `src/ingest/foreign.rs`).
    Foreign,
}

impl TableFormat {
    /// The format named `name` (any case, as USING / STORED AS / the config write it).
    pub fn parse(name: &str) -> Option<TableFormat> {
        Some(match name.to_ascii_lowercase().as_str() {
            "delta" => TableFormat::Delta,
            "iceberg" => TableFormat::Iceberg,
            "parquet" => TableFormat::Parquet,
            "csv" => TableFormat::Csv,
            "json" => TableFormat::Json,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TableFormat::Delta => "delta",
            TableFormat::Iceberg => "iceberg",
            TableFormat::Parquet => "parquet",
            TableFormat::Csv => "csv",
            TableFormat::Json => "json",
            TableFormat::Foreign => "postgres_fdw",
        }
    }

    /// A table format with versions and transactional writes (CREATE TABLE makes these).
    pub fn is_lakehouse(self) -> bool {
        matches!(self, TableFormat::Delta | TableFormat::Iceberg)
    }
}

impl std::fmt::Display for TableFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The warehouse: a local folder, or a URL (`file:///...`, `s3://bucket/prefix`).
    pub warehouse: String,
    /// The table format of CREATE TABLE without `USING`: `delta` or `iceberg`.
    pub default_format: String,
    /// For a warehouse on object storage: the local folder of Lakegate's own metadata (the
    /// catalog document and the Iceberg SQL catalog). Default `./lakegate-meta`.
    pub metadata_dir: Option<String>,
    /// S3 and S3-compatible stores (also used for external tables on s3://).
    pub s3: S3Config,
    /// Azure Blob Storage / ADLS Gen2 (az://container/prefix, abfss://...).
    pub azure: AzureConfig,
    /// Google Cloud Storage (gs://bucket/prefix).
    pub gcs: GcsConfig,
}

/// Azure settings; unset keys fall back to the `AZURE_*` environment variables.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AzureConfig {
    pub account: Option<String>,
    /// A file whose first line is the account key (or `AZURE_STORAGE_ACCOUNT_KEY`).
    pub access_key_file: Option<PathBuf>,
    /// e.g. `http://127.0.0.1:10000/devstoreaccount1` for Azurite.
    pub endpoint: Option<String>,
    pub allow_http: bool,
}

/// Google Cloud Storage settings; unset falls back to the `GOOGLE_*` environment variables.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct GcsConfig {
    /// A service account key file (JSON).
    pub service_account_file: Option<PathBuf>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            warehouse: "./lakegate-data".into(),
            default_format: TableFormat::Delta.as_str().into(),
            metadata_dir: None,
            s3: S3Config::default(),
            azure: AzureConfig::default(),
            gcs: GcsConfig::default(),
        }
    }
}

/// S3 settings; anything left out falls back to the standard `AWS_*` environment variables.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// e.g. `http://127.0.0.1:9000` for MinIO or another S3-compatible server; unset for AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    /// A file whose first line is the secret access key (or `AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key_file: Option<PathBuf>,
    /// Allow plain-HTTP endpoints (test servers).
    pub allow_http: bool,
    /// Path-style requests (`endpoint/bucket/key`), which most S3-compatible servers need.
    pub path_style: bool,
}

/// Azure Blob Storage / ADLS settings (unset keys fall back to the `AZURE_*` variables).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AzureSettings {
    pub account: Option<String>,
    pub access_key: Option<String>,
    /// e.g. Azurite's `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: Option<String>,
    pub allow_http: bool,
}

/// Object store settings: S3 (anything unset falls back to `AWS_*` variables), Azure, and
/// Google Cloud Storage (a service account key file, else `GOOGLE_*` variables).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub allow_http: bool,
    pub path_style: bool,
    pub azure: AzureSettings,
    pub gcs_service_account_file: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .field("path_style", &self.path_style)
            .field("azure_account", &self.azure.account)
            .field("azure_endpoint", &self.azure.endpoint)
            .field(
                "azure_access_key",
                &self.azure.access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("gcs_service_account_file", &self.gcs_service_account_file)
            .finish()
    }
}
