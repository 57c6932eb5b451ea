//! An S3 target (`s3://bucket@region/path`) through `object_store`: path-style addressing
//! unless `VIRTUAL_HOSTED_STYLE=true`, a custom endpoint from `AWS_ENDPOINTS`, keys from
//! the target's credentials. S3 writes are atomic by nature; "directories" are key
//! prefixes.

use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use super::{check_path, Driver, DriverError, DriverErrorKind, DriverFuture, Entry};
use crate::target::Credentials;

#[derive(Debug)]
pub struct S3Driver {
    store: AmazonS3,
    bucket: String,
    prefix: String,
}

impl S3Driver {
    pub fn open(
        bucket: &str,
        region: Option<&str>,
        prefix: &str,
        credentials: &Credentials,
    ) -> Result<S3Driver, DriverError> {
        let (Some(key), Some(secret)) = (
            credentials.access_key_id.as_deref(),
            credentials.secret_access_key.as_deref(),
        ) else {
            return Err(DriverError::new(
                DriverErrorKind::Denied,
                format!(
                    "S3 bucket {bucket}: no credentials; give AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                     (and AWS_ENDPOINTS for a server other than AWS) in the target's credentials"
                ),
            ));
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(region.unwrap_or("us-east-1"))
            .with_access_key_id(key)
            .with_secret_access_key(secret)
            .with_virtual_hosted_style_request(credentials.virtual_hosted_style)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
                ..Default::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120)),
            );
        if let Some(endpoint) = &credentials.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder.build().map_err(|e| {
            DriverError::new(DriverErrorKind::Other, format!("S3 bucket {bucket}: {e}"))
        })?;
        Ok(S3Driver {
            store,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    fn key(&self, path: &str) -> Result<Path, DriverError> {
        check_path(path)?;
        Ok(if self.prefix.is_empty() {
            Path::from(path)
        } else {
            Path::from(format!("{}/{path}", self.prefix))
        })
    }

    fn error(&self, path: &str, e: object_store::Error) -> DriverError {
        use object_store::Error as E;
        let at = if self.prefix.is_empty() {
            format!("s3://{}/{path}", self.bucket)
        } else {
            format!("s3://{}/{}/{path}", self.bucket, self.prefix)
        };
        let text = e.to_string();
        let denied = [
            "403 Forbidden",
            "401 Unauthorized",
            "AccessDenied",
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
        ]
        .iter()
        .any(|w| text.contains(w));
        match e {
            _ if denied => DriverError::new(
                DriverErrorKind::Denied,
                format!("{at}: access denied ({text}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and the bucket's policy"),
            ),
            E::NotFound { .. } => DriverError::not_found(&at),
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => DriverError::new(
                DriverErrorKind::Denied,
                format!("{at}: access denied ({e}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and the bucket's policy"),
            ),
            _ => {
                let lower = text.to_ascii_lowercase();
                let kind = if ["connect", "timed out", "timeout", "sending request", "dns"]
                    .iter()
                    .any(|w| lower.contains(w))
                {
                    DriverErrorKind::Unreachable
                } else if lower.contains("quota") || lower.contains("no space") || lower.contains("entitytoolarge") {
                    DriverErrorKind::NoSpace
                } else {
                    DriverErrorKind::Other
                };
                DriverError::new(kind, format!("{at}: {text}"))
            }
        }
    }

    fn relative<'p>(&self, dir: &str, full: &'p str) -> Option<&'p str> {
        let base = if self.prefix.is_empty() {
            format!("{dir}/")
        } else {
            format!("{}/{dir}/", self.prefix)
        };
        full.strip_prefix(base.as_str())
    }
}

impl Driver for S3Driver {
    fn read<'a>(&'a self, path: &'a str) -> DriverFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let key = self.key(path)?;
            let got = self
                .store
                .get(&key)
                .await
                .map_err(|e| self.error(path, e))?;
            let bytes = got.bytes().await.map_err(|e| self.error(path, e))?;
            Ok(bytes.to_vec())
        })
    }

    fn write<'a>(&'a self, path: &'a str, data: Vec<u8>) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let key = self.key(path)?;
            self.store
                .put(&key, PutPayload::from(data))
                .await
                .map_err(|e| self.error(path, e))?;
            Ok(())
        })
    }

    fn modified<'a>(&'a self, path: &'a str) -> DriverFuture<'a, Option<SystemTime>> {
        Box::pin(async move {
            let key = self.key(path)?;
            match self.store.head(&key).await {
                Ok(meta) => Ok(Some(SystemTime::from(meta.last_modified))),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.error(path, e)),
            }
        })
    }

    fn list<'a>(&'a self, dir: &'a str) -> DriverFuture<'a, Vec<Entry>> {
        Box::pin(async move {
            let key = self.key(dir)?;
            let listed = self
                .store
                .list_with_delimiter(Some(&key))
                .await
                .map_err(|e| self.error(dir, e))?;
            let mut out: Vec<Entry> = listed
                .common_prefixes
                .iter()
                .filter_map(|p| p.filename())
                .map(|name| Entry {
                    name: name.to_string(),
                    is_dir: true,
                })
                .chain(listed.objects.iter().filter_map(|o| {
                    o.location.filename().map(|name| Entry {
                        name: name.to_string(),
                        is_dir: false,
                    })
                }))
                .collect();
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
    }

    fn list_recursive<'a>(&'a self, dir: &'a str) -> DriverFuture<'a, Vec<String>> {
        Box::pin(async move {
            let key = self.key(dir)?;
            let metas: Vec<object_store::ObjectMeta> = self
                .store
                .list(Some(&key))
                .try_collect()
                .await
                .map_err(|e| self.error(dir, e))?;
            let mut out: Vec<String> = metas
                .iter()
                .filter_map(|m| self.relative(dir, m.location.as_ref()).map(str::to_string))
                .collect();
            out.sort();
            Ok(out)
        })
    }

    fn delete<'a>(&'a self, path: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let key = self.key(path)?;
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.error(path, e)),
            }
        })
    }

    fn delete_tree<'a>(&'a self, dir: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let key = self.key(dir)?;
            let locations = self.store.list(Some(&key)).map_ok(|m| m.location).boxed();
            self.store
                .delete_stream(locations)
                .try_collect::<Vec<Path>>()
                .await
                .map_err(|e| self.error(dir, e))?;
            Ok(())
        })
    }
}
