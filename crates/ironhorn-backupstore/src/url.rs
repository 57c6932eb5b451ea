//! Backup target URLs (`file:///path` or `vfs:///path`, `nfs://server:/export/path`,
//! `s3://bucket@region/path`) and backup/volume URLs (a target URL with
//! `?backup=<name>&volume=<name>`), parsed strictly with errors that show the accepted forms.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::error::{BackupStoreError, Result};
use crate::layout::validate_name;

/// Where a backup target keeps `backupstore/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetUrl {
    /// A local (or already mounted) directory: `file:///path`, Longhorn's `vfs:///path`.
    File { path: PathBuf },
    /// An NFSv3 export spoken to from user space: `nfs://server:/export/path`, with
    /// Longhorn's `?nfsOptions=` carrying `port=N,mountport=N` when the server has no
    /// portmapper.
    Nfs {
        server: String,
        path: String,
        options: BTreeMap<String, String>,
    },
    /// An S3 bucket: `s3://bucket@region/path` or `s3://bucket/path`.
    S3 {
        bucket: String,
        region: Option<String>,
        prefix: String,
    },
}

fn invalid(url: &str, reason: impl Into<String>) -> BackupStoreError {
    BackupStoreError::InvalidUrl {
        url: url.to_string(),
        reason: reason.into(),
    }
}

const FORMS: &str = "use file:///path, nfs://server:/export/path or s3://bucket@region/path";

impl TargetUrl {
    /// Parses a target URL; query parameters other than `nfsOptions` are refused.
    pub fn parse(url: &str) -> Result<TargetUrl> {
        let (base, query) = split_query(url);
        let params = parse_query(query);
        TargetUrl::from_parts(url, base, params)
    }

    fn from_parts(
        url: &str,
        base: &str,
        mut params: BTreeMap<String, String>,
    ) -> Result<TargetUrl> {
        let (scheme, rest) = base
            .split_once("://")
            .ok_or_else(|| invalid(url, format!("no scheme; {FORMS}")))?;
        let target = match scheme.to_ascii_lowercase().as_str() {
            "file" | "vfs" => {
                if !rest.starts_with('/') {
                    return Err(invalid(url, "the path must be absolute (file:///path)"));
                }
                let path = rest.trim_end_matches('/');
                TargetUrl::File {
                    path: PathBuf::from(if path.is_empty() { "/" } else { path }),
                }
            }
            "nfs" => {
                let (server, path) = rest
                    .split_once(":/")
                    .ok_or_else(|| invalid(url, "expected nfs://server:/export/path"))?;
                if server.is_empty() || server.contains('/') {
                    return Err(invalid(
                        url,
                        "the NFS server is missing (nfs://server:/export/path)",
                    ));
                }
                let path = format!("/{}", path.trim_matches('/'));
                let options = params
                    .remove("nfsOptions")
                    .map(|o| parse_nfs_options(url, &o))
                    .transpose()?
                    .unwrap_or_default();
                TargetUrl::Nfs {
                    server: server.to_string(),
                    path,
                    options,
                }
            }
            "s3" => {
                let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                let (bucket, region) = match host.split_once('@') {
                    Some((b, r)) => (b, Some(r.to_string()).filter(|r| !r.is_empty())),
                    None => (host, None),
                };
                if bucket.is_empty() {
                    return Err(invalid(
                        url,
                        "the bucket is missing (s3://bucket@region/path)",
                    ));
                }
                TargetUrl::S3 {
                    bucket: bucket.to_string(),
                    region,
                    prefix: prefix.trim_matches('/').to_string(),
                }
            }
            other => {
                return Err(invalid(
                    url,
                    format!("unsupported scheme {other:?}; {FORMS}"),
                ));
            }
        };
        if let Some(key) = params.keys().next() {
            return Err(invalid(url, format!("unknown parameter {key:?}")));
        }
        Ok(target)
    }

    /// The kind as Longhorn names it in its UI: `vfs`, `nfs`, `s3`.
    pub fn kind(&self) -> &'static str {
        match self {
            TargetUrl::File { .. } => "vfs",
            TargetUrl::Nfs { .. } => "nfs",
            TargetUrl::S3 { .. } => "s3",
        }
    }
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetUrl::File { path } => write!(f, "file://{}", path.display()),
            TargetUrl::Nfs {
                server,
                path,
                options,
            } => {
                write!(f, "nfs://{server}:{path}")?;
                if !options.is_empty() {
                    let joined: Vec<String> = options
                        .iter()
                        .map(|(k, v)| {
                            if v.is_empty() {
                                k.clone()
                            } else {
                                format!("{k}={v}")
                            }
                        })
                        .collect();
                    let query: String = form_urlencoded::Serializer::new(String::new())
                        .append_pair("nfsOptions", &joined.join(","))
                        .finish();
                    write!(f, "?{query}")?;
                }
                Ok(())
            }
            TargetUrl::S3 {
                bucket,
                region,
                prefix,
            } => {
                write!(f, "s3://{bucket}")?;
                if let Some(r) = region {
                    write!(f, "@{r}")?;
                }
                write!(f, "/{prefix}")
            }
        }
    }
}

fn parse_nfs_options(url: &str, options: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for opt in options.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            continue;
        }
        if matches!(k, "port" | "mountport" | "nfsport") && v.parse::<u16>().is_err() {
            return Err(invalid(
                url,
                format!("nfsOptions {k}={v:?} is not a port number"),
            ));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn split_query(url: &str) -> (&str, &str) {
    url.split_once('?').unwrap_or((url, ""))
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A backup URL (`<target>?backup=B&volume=V`) or a volume URL (`<target>?volume=V`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupUrl {
    pub target: TargetUrl,
    pub volume: String,
    pub backup: Option<String>,
}

impl BackupUrl {
    pub fn parse(url: &str) -> Result<BackupUrl> {
        let (base, query) = split_query(url);
        let mut params = parse_query(query);
        let volume = params
            .remove("volume")
            .ok_or_else(|| invalid(url, "the backup URL names no volume (…?backup=B&volume=V)"))?;
        let backup = params.remove("backup");
        validate_name("volume", &volume)?;
        if let Some(b) = &backup {
            validate_name("backup", b)?;
        }
        let target = TargetUrl::from_parts(url, base, params)?;
        Ok(BackupUrl {
            target,
            volume,
            backup,
        })
    }

    /// The backup URL of `backup` of `volume` in `target`, as Longhorn writes it.
    pub fn format(target: &TargetUrl, volume: &str, backup: Option<&str>) -> String {
        let mut s = target.to_string();
        let mut ser = form_urlencoded::Serializer::new(String::new());
        if let Some(b) = backup {
            ser.append_pair("backup", b);
        }
        ser.append_pair("volume", volume);
        let query = ser.finish();
        if let TargetUrl::Nfs { options, .. } = target {
            if !options.is_empty() {
                s.push('&');
                s.push_str(&query);
                return s;
            }
        }
        s.push('?');
        s.push_str(&query);
        s
    }
}

impl fmt::Display for BackupUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BackupUrl::format(
            &self.target,
            &self.volume,
            self.backup.as_deref(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_target_form() {
        assert_eq!(
            TargetUrl::parse("nfs://192.168.1.106:/backup").ok(),
            Some(TargetUrl::Nfs {
                server: "192.168.1.106".into(),
                path: "/backup".into(),
                options: BTreeMap::new()
            })
        );
        assert_eq!(
            TargetUrl::parse("s3://backups@us-east-1/cluster-a/").ok(),
            Some(TargetUrl::S3 {
                bucket: "backups".into(),
                region: Some("us-east-1".into()),
                prefix: "cluster-a".into()
            })
        );
        assert_eq!(
            TargetUrl::parse("vfs:///var/backups").ok(),
            Some(TargetUrl::File {
                path: "/var/backups".into()
            })
        );
        let nfs =
            TargetUrl::parse("nfs://10.0.0.1:/exp?nfsOptions=port%3D2049%2Cmountport%3D20048");
        match nfs {
            Ok(TargetUrl::Nfs { options, .. }) => {
                assert_eq!(options.get("port").map(String::as_str), Some("2049"));
                assert_eq!(options.get("mountport").map(String::as_str), Some("20048"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_what_longhorn_refuses() {
        for bad in [
            "backup",
            "nfs://:/x",
            "nfs://host/x",
            "s3:///path",
            "ftp://x/y",
            "file://relative",
            "file:///x?foo=1",
            "nfs://h:/x?nfsOptions=port%3Dabc",
        ] {
            assert!(TargetUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backup_urls_round_trip() {
        let url = "s3://b@r/p?backup=backup-0123456789abcdef&volume=pvc-1";
        let parsed = BackupUrl::parse(url).expect("parses");
        assert_eq!(parsed.volume, "pvc-1");
        assert_eq!(parsed.backup.as_deref(), Some("backup-0123456789abcdef"));
        assert_eq!(parsed.to_string(), url);
        assert!(BackupUrl::parse("s3://b@r/p?backup=x").is_err());
        assert!(BackupUrl::parse("s3://b@r/p?backup=../x&volume=v1").is_err());
        let nfs = BackupUrl::parse("nfs://h:/e?nfsOptions=port%3D1&volume=v1").expect("parses");
        assert_eq!(BackupUrl::parse(&nfs.to_string()).ok(), Some(nfs));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in ".{0,80}") {
            let _ = TargetUrl::parse(&s);
            let _ = BackupUrl::parse(&s);
        }

        #[test]
        fn displayed_targets_parse_back(bucket in "[a-z][a-z0-9-]{2,10}", prefix in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}") {
            let t = TargetUrl::S3 { bucket, region: Some("r1".into()), prefix };
            prop_assert_eq!(TargetUrl::parse(&t.to_string()).ok(), Some(t));
        }
    }
}
